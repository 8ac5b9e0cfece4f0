"""Commands that act on a running endpoint: top, scale, logs, predict, load."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live

from ebbtide.cli.output import table
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.errors import EbbtideError, NotFoundError
from ebbtide.core.paths import ebbtide_home
from ebbtide.loadgen.requests import example_request
from ebbtide.loadgen.runner import Progress, percentile, run_open_loop, summarize
from ebbtide.loadgen.schedule import constant, parse_steps, steps, trace

NamespaceOption = Annotated[str, typer.Option("-n", "--namespace", help="The namespace.")]


def pod_usage_table(pods: list[dict[str, Any]]) -> str:
    """NAME CPU(cores) MEMORY(bytes), as `kubectl top pods`."""
    rows = []
    for pod in pods:
        usage = (pod.get("status") or {}).get("usage") or {}
        rows.append([pod["metadata"]["name"], usage.get("cpu", "0m"), usage.get("memory", "0Mi")])
    return table(["NAME", "CPU(cores)", "MEMORY(bytes)"], rows)


def endpoint_url(endpoint: dict[str, Any]) -> str:
    """Where the endpoint's clients send requests, or a clear error while it has none."""
    url = (endpoint.get("status") or {}).get("url")
    if not url:
        name = endpoint["metadata"]["name"]
        raise NotFoundError(
            f"endpoint {name!r} has no URL yet; is the control plane's gateway running? "
            f"(`ebbtide describe ie {name}`)"
        )
    return str(url)


def infer_path(endpoint: dict[str, Any]) -> str:
    model = endpoint["spec"]["model"]
    return f"/v2/models/{model['name']}/infer"


def read_body(data: str) -> dict[str, Any]:
    """`-d '{...}'` or `-d @file.json`, as curl takes them."""
    text = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise EbbtideError(f"the request body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise EbbtideError("the request body must be a JSON object with `inputs`")
    return body


def model_example(url: str, endpoint: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A valid request for the endpoint's model, built from its v2 metadata."""
    model = endpoint["spec"]["model"]
    response = httpx.get(f"{url}/v2/models/{model['name']}/versions/{model['version']}", timeout=10)
    response.raise_for_status()
    return example_request(response.json(), rng)


def follow_log(path: Path, follow: bool) -> None:
    """Print a replica's log; with `follow`, keep printing what is appended (Ctrl-C stops)."""
    if not path.exists():
        raise NotFoundError(f"no log for pod {path.stem!r} at {path}")
    with path.open() as file:
        typer.echo(file.read(), nl=False)
        while follow:
            line = file.readline()
            if line:
                typer.echo(line, nl=False)
            else:
                SYSTEM_CLOCK.blocking_sleep(0.2)


def log_path(pod: str) -> Path:
    return ebbtide_home() / "logs" / f"{pod}.log"


def run_load(
    url: str,
    body: dict[str, Any],
    arrivals: list[float],
    console: Console,
    timeout: float,
) -> list[str]:
    """Send the schedule open loop with a live progress line; return the summary lines."""
    progress = Progress()

    async def drive() -> list[str]:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            payload = json.dumps(body).encode()
            headers = {"content-type": "application/json"}

            async def send() -> int:
                response = await client.post(url, content=payload, headers=headers)
                return response.status_code

            task = asyncio.create_task(run_open_loop(send, arrivals, SYSTEM_CLOCK, progress))
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                while not task.done():
                    live.update(_progress_line(progress, len(arrivals)))
                    await asyncio.sleep(0.25)
            return summarize(await task).lines()

    return asyncio.run(drive())


def _progress_line(progress: Progress, total: int) -> str:
    recent = progress.latencies[-500:]
    return (
        f"sent {progress.sent}/{total}  ok {progress.succeeded}  failed {progress.failed}  "
        f"in flight {progress.sent - progress.done}  "
        f"p50 {percentile(recent, 0.5) * 1000:.1f} ms  p99 {percentile(recent, 0.99) * 1000:.1f} ms"
    )


def build_schedule(
    rate: float | None,
    duration: float,
    step_plan: str | None,
    trace_file: Path | None,
    speedup: float,
    rate_scale: float,
    seed: int,
) -> list[float]:
    """The arrival offsets the options ask for (exactly one of rate, steps, trace)."""
    given = [option for option in (rate, step_plan, trace_file) if option is not None]
    if len(given) != 1:
        raise EbbtideError("give exactly one of --rate, --steps or --trace")
    rng = random.Random(seed)
    if trace_file is not None:
        return trace(trace_file, speedup, rate_scale, duration if duration > 0 else None, rng)
    if step_plan is not None:
        return steps(parse_steps(step_plan), rng)
    assert rate is not None
    return constant(rate, duration, rng)
