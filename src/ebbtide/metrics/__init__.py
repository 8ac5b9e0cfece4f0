"""ebbtide.metrics."""
