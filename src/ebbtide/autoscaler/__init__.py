"""ebbtide.autoscaler."""
