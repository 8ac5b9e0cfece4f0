"""ebbtide.daemon: the local control-plane process that composes api, controller and gateway."""
