"""Measurements: what each replica process uses, over windows."""

from ebbtide.metrics.usage import ProcessUsage, UsageWindow, read_usage

__all__ = ["ProcessUsage", "UsageWindow", "read_usage"]
