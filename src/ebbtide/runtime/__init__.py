"""ebbtide.runtime."""
