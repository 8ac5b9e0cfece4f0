"""ebbtide.kube."""
