"""ebbtide.gateway."""
