"""ebbtide.api."""
