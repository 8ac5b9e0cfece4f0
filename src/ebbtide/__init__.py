"""ebbtide: auto-scaling inference endpoints, locally or on Kubernetes."""

__version__ = "0.1.0"
