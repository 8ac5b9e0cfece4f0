"""ebbtide.controller."""
