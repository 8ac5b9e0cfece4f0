"""ebbtide.store."""
