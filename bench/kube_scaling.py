"""Kubernetes scaling, side by side on the test cluster: the real HPA (class hpa) and ebbtide's
policy run by the operator (class ebbtide), one after the other, on the same heavy model, plus
the simulator's HPA model on the same arrivals.

Per endpoint: a steady base load, a step up (open loop, Poisson arrivals), hold, step down,
then a rollout (model version change) under load, and for class ebbtide a scale from zero.
Sampled every 0.2 s: the Deployment's spec.replicas and ready replicas. Per request: send time,
status and latency. Per pod, every 0.1 s until it has answered: when its address entered the
Service's ready Endpoints, and when its own `/metrics` first counted an answered inference
(`ebbtide_requests_total{route="infer",code="200"}`). That gives the first added pod's answer
whichever path the load takes (straight to pod IPs with `--direct`, or through the gateway,
which names no pod in its answers), to within one poll.

    .venv/bin/python bench/kube_scaling.py --direct --classes hpa --json /tmp/kube.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from testbed import apps  # noqa: E402
from testbed.cluster import KUBERNETES_HPA_SYNC_PERIOD, Cluster  # noqa: E402
from testbed.metrics import WINDOW_SECONDS as METRICS_WINDOW  # noqa: E402

from ebbtide.autoscaler import KUBERNETES, policy_for  # noqa: E402
from ebbtide.sim.engine import Simulation  # noqa: E402
from ebbtide.sim.platform import Platform  # noqa: E402
from ebbtide.sim.policies import Autoscaler  # noqa: E402
from ebbtide.sim.workload import Workload  # noqa: E402
from ebbtide.spec.models import InferenceEndpoint  # noqa: E402

NAMESPACE = "ebbtide-bench"
MODEL = "bench-model"
MAX_REPLICAS = 4
SCALE_DOWN_WINDOW = 30
SAMPLE_SECONDS = 0.2
POD_POLL_SECONDS = 0.1
GATEWAY_PORT = 8080
ZERO_BURST = 20


@dataclass(frozen=True)
class Plan:
    """The load every endpoint gets: requests per second and seconds of each phase."""

    base_rate: float = 8.0
    step_rate: float = 30.0
    base_seconds: float = 20.0
    step_seconds: float = 75.0
    down_seconds: float = 60.0
    rollout_rate: float = 8.0


@dataclass
class Request:
    sent: float
    status: int
    latency: float


@dataclass
class PodSeen:
    """One pod's first moments in rotation, seconds since the run's start."""

    name: str
    ready: float
    """First poll that found its address among the Service's ready Endpoints."""
    answered: float | None = None
    """First poll at which its own metrics counted an answered inference (an upper bound)."""
    not_answered: float | None = None
    """The poll before that, when it had answered none yet (the lower bound)."""


@dataclass
class Run:
    """What one endpoint's run recorded."""

    name: str
    autoscaler_class: str
    path: str
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds since the run's start, Deployment spec.replicas, ready replicas)."""
    requests: list[Request] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    """Phase starts, seconds since the run's start."""
    pod_start_seconds: list[float] = field(default_factory=list)
    pods: dict[str, PodSeen] = field(default_factory=dict)
    cpu_per_request: float = 0.0
    notes: list[str] = field(default_factory=list)


CONCURRENCY_TARGET = {
    "type": "Pods",
    "pods": {
        "metric": {"name": "concurrency"},
        "target": {"type": "AverageValue", "averageValue": "1"},
    },
}


def endpoint(
    name: str, autoscaler_class: str, version: str = "v1", ebbtide_target: str = "concurrency"
) -> dict[str, Any]:
    """The seed's shape on the bench model. Class ebbtide scales from zero, on requests in
    flight (what it is for: the gateway reports them every decision) or, with
    `ebbtide_target="cpu"`, on the HPA's own CPU target (read from metrics.k8s.io)."""
    autoscaling: dict[str, Any] = {
        "minReplicas": 0 if autoscaler_class == "ebbtide" else 1,
        "maxReplicas": MAX_REPLICAS,
        "targetCPUUtilizationPercentage": 60,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW}},
    }
    if autoscaler_class == "ebbtide":
        # Unset, the class is `hpa` for this spec (CPU target, minReplicas >= 1): the seed's.
        autoscaling["class"] = "ebbtide"
        if ebbtide_target == "concurrency":
            del autoscaling["targetCPUUtilizationPercentage"]
            autoscaling["metrics"] = [CONCURRENCY_TARGET]
    return {
        "apiVersion": "mlops.example.com/v1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL, "version": version},
            "autoscaling": autoscaling,
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": 1, "memory": "2Gi"},
            },
        },
    }


class Bench:
    def __init__(
        self, cluster: Cluster, kubeconfig: Path, direct: bool, ebbtide_target: str
    ) -> None:
        self.cluster, self.kubeconfig, self.direct = cluster, kubeconfig, direct
        self.ebbtide_target = ebbtide_target
        assert cluster.state is not None
        self.api = cluster.client(cluster.state)
        self.api_lock = threading.Lock()
        body = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64"}]}
        body["inputs"][0]["data"] = [float(i % 16) for i in range(64)]  # type: ignore[assignment]
        self.body = json.dumps(body)

    def get(self, path: str) -> Any:
        with self.api_lock:
            response = self.api.get(path)
        return response.json() if response.status_code == 200 else None

    def upstreams(self, name: str) -> list[tuple[str, str]]:
        """(url base, pod name) of each ready address."""
        found = self.get(f"/api/v1/namespaces/{NAMESPACE}/endpoints/{name}") or {}
        return [
            (f"http://{a['ip']}:{p['port']}", (a.get("targetRef") or {}).get("name", a["ip"]))
            for subset in found.get("subsets") or []
            for a in subset.get("addresses") or []
            for p in subset.get("ports") or []
        ]

    def gateway(self) -> str:
        pods = self.get(
            f"/api/v1/namespaces/{apps.OPERATOR_NAMESPACE}/pods"
            "?labelSelector=app.kubernetes.io/name%3Debbtide-gateway"
        )
        for pod in (pods or {}).get("items", []):
            if pod.get("status", {}).get("podIP"):
                return f"http://{pod['status']['podIP']}:{GATEWAY_PORT}"
        raise RuntimeError(
            "no ebbtide-gateway pod with an IP in ebbtide-system: install the gateway "
            "(ebbtide kube install) or run with --direct"
        )

    def deployment(self, name: str) -> tuple[int, int]:
        found = self.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}") or {}
        spec = found.get("spec", {}).get("replicas", 0) or 0
        ready = found.get("status", {}).get("readyReplicas", 0) or 0
        return int(spec), int(ready)

    def run(self, name: str, autoscaler_class: str, plan: Plan, seed: int) -> Run:
        record = Run(name, autoscaler_class, "direct to pod IPs" if self.direct else "gateway")
        apps.kubectl(
            self.kubeconfig,
            "apply",
            "-f",
            "-",
            stdin=yaml.safe_dump(
                endpoint(name, autoscaler_class, ebbtide_target=self.ebbtide_target)
            ),
        )
        deadline = time.monotonic() + 180
        while not self.upstreams(name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no ready pod after 180 s")
            time.sleep(0.5)
        start = time.monotonic()
        stopping = threading.Event()
        addresses: list[list[tuple[str, str]]] = [self.upstreams(name)]
        gateway = "" if self.direct else self.gateway()

        def sample() -> None:
            while not stopping.wait(SAMPLE_SECONDS):
                with contextlib.suppress(httpx.HTTPError):
                    spec, ready = self.deployment(name)
                    record.samples.append((time.monotonic() - start, spec, ready))
                    if self.direct:
                        addresses[0] = self.upstreams(name)

        def watch_pods() -> None:
            metrics = httpx.Client(timeout=2.0)
            while not stopping.wait(POD_POLL_SECONDS):
                with contextlib.suppress(httpx.HTTPError):
                    ready = self.upstreams(name)
                now = time.monotonic() - start
                for base, pod in ready:
                    seen = record.pods.setdefault(pod, PodSeen(pod, now))
                    if seen.answered is not None:
                        continue
                    with contextlib.suppress(httpx.HTTPError):
                        if answered_inferences(metrics.get(f"{base}/metrics").text) > 0:
                            seen.answered = time.monotonic() - start
                        else:
                            seen.not_answered = now
            metrics.close()

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        pod_watcher = threading.Thread(target=watch_pods, daemon=True)
        pod_watcher.start()
        pool = ThreadPoolExecutor(max_workers=96)
        local = threading.local()
        turn = [0]

        def send(sent: float | None = None) -> None:
            # The arrival's own time: a request waiting for a free sender is still late.
            sent = time.monotonic() if sent is None else sent
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=30.0)
            if self.direct:
                found = addresses[0]
                if not found:
                    record.requests.append(Request(sent - start, 0, 0.0))
                    return
                turn[0] += 1
                url = f"{found[turn[0] % len(found)][0]}/v2/models/{MODEL}/infer"
            else:
                # The gateway names an endpoint by its name alone (unique here).
                url = f"{gateway}/endpoints/{name}/v2/models/{MODEL}/infer"
            try:
                answer = client.post(
                    url, content=self.body, headers={"content-type": "application/json"}
                )
                status = answer.status_code
            except httpx.HTTPError:
                status = 0
            record.requests.append(Request(sent - start, status, time.monotonic() - sent))

        rng = random.Random(seed)

        def load(rate: float, seconds: float) -> None:
            end = time.monotonic() + seconds
            at = time.monotonic()
            while True:
                at += rng.expovariate(rate)
                if at >= end:
                    break
                time.sleep(max(0.0, at - time.monotonic()))
                pool.submit(send, at)

        try:
            record.marks["base"] = 0.0
            load(plan.base_rate, plan.base_seconds)
            record.cpu_per_request = self.cpu_per_request(name, plan.base_rate)
            record.marks["step"] = time.monotonic() - start
            load(plan.step_rate, plan.step_seconds)
            record.marks["down"] = time.monotonic() - start
            load(plan.base_rate, plan.down_seconds)
            record.marks["rollout"] = time.monotonic() - start
            rollout = threading.Thread(target=self.rollout, args=(name, autoscaler_class))
            rollout.start()
            while rollout.is_alive():
                load(plan.rollout_rate, 1.0)
            load(plan.rollout_rate, 3.0)
            record.marks["rollout_end"] = time.monotonic() - start
            if autoscaler_class == "ebbtide":
                self.from_zero(name, record, start, pool, send)
            record.marks["end"] = time.monotonic() - start
        finally:
            pool.shutdown(wait=True)
            stopping.set()
            sampler.join()
            pod_watcher.join()
        record.pod_start_seconds = self.pod_starts(name)
        apps.kubectl(
            self.kubeconfig, "-n", NAMESPACE, "delete", "ie", name, "--wait=true", check=False
        )
        return record

    def rollout(self, name: str, autoscaler_class: str) -> None:
        document = yaml.safe_dump(endpoint(name, autoscaler_class, "v2", self.ebbtide_target))
        apps.kubectl(self.kubeconfig, "apply", "-f", "-", stdin=document)
        time.sleep(2)
        apps.kubectl(
            self.kubeconfig,
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            f"deployment/{name}",
            "--timeout=180s",
            timeout=200,
        )

    def from_zero(
        self, name: str, record: Run, start: float, pool: ThreadPoolExecutor, send: Any
    ) -> None:
        deadline = time.monotonic() + 120
        while self.deployment(name)[0] != 0:
            if time.monotonic() > deadline:
                record.notes.append("never scaled to zero within 120 s of idle")
                return
            time.sleep(0.5)
        record.marks["zero"] = time.monotonic() - start
        futures = [pool.submit(send) for _ in range(ZERO_BURST)]
        for future in futures:
            future.result()
        record.marks["zero_end"] = time.monotonic() - start

    def cpu_per_request(self, name: str, rate: float) -> float:
        """CPU seconds per request: the pods' CPU from metrics.k8s.io (a rate over the test
        node's 10 s window) over the base rate."""
        found = self.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods") or {}
        cores = 0.0
        for pod in found.get("items", []):
            if not pod["metadata"]["name"].startswith(name):
                continue
            for container in pod.get("containers", []):
                value = container["usage"]["cpu"]
                cores += (
                    float(value[:-1]) / (1e9 if value.endswith("n") else 1e3)
                    if value[-1] in "nm"
                    else float(value)
                )
        return cores / rate

    def pod_starts(self, name: str) -> list[float]:
        """Seconds from each pod's creation to its Ready condition (1 s resolution)."""
        from datetime import datetime

        found = self.get(f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{name}") or {}
        starts = []
        for pod in found.get("items", []):
            created = datetime.fromisoformat(
                pod["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            )
            for condition in pod.get("status", {}).get("conditions", []):
                if condition["type"] == "Ready" and condition["status"] == "True":
                    ready = datetime.fromisoformat(
                        condition["lastTransitionTime"].replace("Z", "+00:00")
                    )
                    starts.append((ready - created).total_seconds())
        return starts


def figures(run: Run) -> dict[str, Any]:
    step, down, rollout = run.marks["step"], run.marks["down"], run.marks["rollout"]
    before = [s for s in run.samples if s[0] < step]
    at_step = before[-1][1] if before else 1
    raised = next((t for t, spec, _ in run.samples if t >= step and spec > at_step), None)
    # The pods that joined during the step, in the order they entered the Endpoints.
    added = sorted((p for p in run.pods.values() if step <= p.ready < down), key=lambda p: p.ready)
    first = added[0] if added else None
    waits = [p.answered - p.ready for p in added if p.answered is not None]

    def failed(lo: float, hi: float) -> int:
        return sum(1 for r in run.requests if lo <= r.sent < hi and r.status != 200)

    load = [s for s in run.samples if s[0] < rollout]
    replica_seconds = sum(spec * SAMPLE_SECONDS for _, spec, _ in load)
    latencies = sorted(r.latency for r in run.requests if r.sent < rollout and r.status == 200)
    result = {
        "class": run.autoscaler_class,
        "path": run.path,
        "requests": len(run.requests),
        "replicas_raised_s": None if raised is None else round(raised - step, 2),
        "first_added_pod_ready_s": None if first is None else round(first.ready - step, 2),
        "first_added_pod_answers_s": None
        if first is None or first.answered is None
        else round(first.answered - step, 2),
        # From entering the Endpoints to its first answer, the slowest of the added pods.
        "added_pod_ready_to_answer_max_s": round(max(waits), 2) if waits else None,
        "failed_step": failed(step, down),
        "failed_scale_down": failed(down, rollout),
        "failed_rollout": failed(rollout, run.marks["rollout_end"]),
        "replica_seconds": round(replica_seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies
        else None,
        "peak_replicas": max((s[1] for s in run.samples), default=0),
        "pod_start_s": statistics.median(run.pod_start_seconds) if run.pod_start_seconds else None,
        "cpu_per_request_ms": round(1000 * run.cpu_per_request, 2),
    }
    if "zero" in run.marks:
        result["failed_from_zero"] = failed(run.marks["zero"], run.marks["zero_end"])
        woken = [p for p in run.pods.values() if p.ready >= run.marks["zero"]]
        if woken and woken[0].answered is not None:
            result["from_zero_pod_ready_to_answer_s"] = round(woken[0].answered - woken[0].ready, 2)
    return result


def answered_inferences(exposition: str) -> float:
    """Inference requests a replica answered with 200, from its Prometheus text."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "ebbtide_requests"
        for sample in family.samples
        if sample.name == "ebbtide_requests_total"
        and sample.labels.get("route") == "infer"
        and sample.labels.get("code") == "200"
    )


def simulate(run: Run, sync_period: float) -> dict[str, Any]:
    """The simulator's HPA model on the arrivals this run sent, with its measured CPU per
    request and pod start, the controller's sync period and the spec's scale-down window."""
    rollout = run.marks["rollout"]
    arrivals = tuple(sorted(r.sent for r in run.requests if r.sent < rollout))
    cpu = run.cpu_per_request or 0.01
    workload = Workload("bench", arrivals, tuple(cpu for _ in arrivals), rollout)
    spec = InferenceEndpoint.model_validate(endpoint(run.name, "hpa"))
    # The controller's sync period, and the test node's metrics window (metrics-server's is
    # its scrape interval, which the profile's 15 s stands for).
    profile = replace(KUBERNETES.with_sync_period(sync_period), metric_window=METRICS_WINDOW)
    policy = policy_for(spec, profile)
    start = statistics.median(run.pod_start_seconds) if run.pod_start_seconds else 1.0
    platform = Platform(start_time=max(0.1, start), concurrency=8)
    trace = Simulation(workload, Autoscaler("hpa", policy), platform, 1, 0).run()
    step = run.marks["step"]
    raised = next((t for t, n in trace.replica_changes if t >= step and n > 1), None)
    return {
        "replicas_raised_s": None if raised is None else round(raised - step, 2),
        "peak_replicas": max((n for _, n in trace.replica_changes), default=1),
        "replica_seconds": round(trace.replica_seconds, 1),
        "replica_changes": [(round(t, 2), n) for t, n in trace.replica_changes],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--direct", action="store_true", help="send to ready pod IPs, not the in-cluster gateway"
    )
    parser.add_argument("--classes", default="hpa,ebbtide")
    parser.add_argument(
        "--ebbtide-target",
        choices=["concurrency", "cpu"],
        default="concurrency",
        help="class ebbtide's target: requests in flight (1 per replica) or the HPA's 60%% CPU",
    )
    parser.add_argument(
        "--sync-period", type=float, default=15.0, help="the HPA's sync period, seconds"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--short", action="store_true", help="a smoke run: short phases")
    parser.add_argument(
        "--step-rate", type=float, default=Plan.step_rate, help="requests per second in the step"
    )
    args = parser.parse_args()
    plan = Plan(base_seconds=10, step_seconds=20, down_seconds=10) if args.short else Plan()
    plan = replace(plan, step_rate=args.step_rate)
    sync = f"{args.sync_period:g}s" if args.sync_period != 15 else KUBERNETES_HPA_SYNC_PERIOD
    results: dict[str, Any] = {"plan": asdict(plan), "sync_period": args.sync_period, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="ebbtide-kube-bench-") as directory:
        cluster = Cluster(Path(directory) / "cluster", hpa_sync_period=sync)
        cluster.start(owned=True)
        try:
            kubeconfig = cluster.kubeconfig
            apps.kubectl(kubeconfig, "create", "namespace", NAMESPACE)
            apps.install(kubeconfig, () if args.direct else ("ebbtide-operator", "ebbtide-gateway"))
            apps.kubectl(
                kubeconfig,
                "-n",
                apps.OPERATOR_NAMESPACE,
                "rollout",
                "status",
                "deployment/ebbtide-operator",
                "--timeout=120s",
                timeout=140,
            )
            apps.load_models(
                kubeconfig, (("heavy", f"{MODEL}:v1"), ("heavy", f"{MODEL}:v2")), NAMESPACE
            )
            bench = Bench(cluster, kubeconfig, args.direct, args.ebbtide_target)
            for index, autoscaler_class in enumerate(args.classes.split(",")):
                name = f"bench-{autoscaler_class}"
                try:
                    run = bench.run(name, autoscaler_class, plan, seed=index)
                except (RuntimeError, AssertionError) as error:
                    results["runs"][autoscaler_class] = {"error": str(error)}
                    print(f"{autoscaler_class}: {error}", file=sys.stderr)
                    continue
                entry: dict[str, Any] = {"figures": figures(run), "series": asdict(run)}
                if autoscaler_class == "hpa":
                    entry["simulated_hpa"] = simulate(run, args.sync_period)
                results["runs"][autoscaler_class] = entry
        finally:
            cluster.stop()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def print_table(results: dict[str, Any]) -> None:
    runs = {k: v["figures"] for k, v in results["runs"].items() if "figures" in v}
    simulated = results["runs"].get("hpa", {}).get("simulated_hpa")
    keys = sorted({k for f in runs.values() for k in f})
    columns = list(runs) + (["sim hpa"] if simulated else [])
    print(f"HPA sync period {results['sync_period']:g} s; plan {results['plan']}")
    header = f"{'figure':28}" + "".join(f"{c:>20}" for c in columns)
    print(header + f"{'ebbtide/hpa':>14}{'sim/real hpa':>14}")
    for key in keys:
        cells = [runs[c].get(key) for c in runs]
        if simulated:
            cells.append(simulated.get(key, ""))
        ratio = ""
        hpa, ebb = runs.get("hpa", {}).get(key), runs.get("ebbtide", {}).get(key)
        if isinstance(hpa, (int, float)) and isinstance(ebb, (int, float)) and hpa:
            ratio = f"{ebb / hpa:.2f}x"
        sim = (simulated or {}).get(key)
        gap = f"{sim / hpa:.2f}x" if isinstance(sim, (int, float)) and hpa else ""
        row = f"{key:28}" + "".join(f"{'' if c is None else c!s:>20}" for c in cells)
        print(row + f"{ratio:>14}{gap:>14}")
    for name, entry in results["runs"].items():
        if "error" in entry:
            print(f"{name}: not measured: {entry['error']}")


if __name__ == "__main__":
    raise SystemExit(main())
