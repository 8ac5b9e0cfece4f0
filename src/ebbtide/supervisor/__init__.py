"""ebbtide.supervisor."""
