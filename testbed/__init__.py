"""A Kubernetes test cluster on one machine: a real 1.20.2 control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) on loopback, and a test node that runs pods as local
processes, like KWOK but with real processes, probes and metrics.

Test infrastructure only: nothing under `src/ebbtide` imports it.
"""
