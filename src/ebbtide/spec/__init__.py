"""ebbtide.spec."""
