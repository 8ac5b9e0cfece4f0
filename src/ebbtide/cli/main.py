"""The `ebbtide` command: kubectl's verbs and output for inference endpoints."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console

from ebbtide.api.client import ControlPlaneClient, socket_path
from ebbtide.cli import describe as describe_view
from ebbtide.cli import operate
from ebbtide.cli.output import as_list, dump
from ebbtide.cli.resources import QUALIFIED_ENDPOINT, endpoint_rows, kind_of
from ebbtide.core.errors import (
    AlreadyExistsError,
    ConflictError,
    EbbtideError,
    NotFoundError,
    SpecError,
)
from ebbtide.core.paths import ebbtide_home
from ebbtide.spec import (
    InferenceEndpoint,
    is_autoscaling_fragment,
    parse_documents,
    read_text,
    resource_files,
    validate,
    validate_autoscaling_fragment,
)
from ebbtide.spec.schema import endpoint_json_schema, explain

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Auto-scaling inference endpoints, locally or on Kubernetes.",
)

FilesOption = Annotated[
    list[str], typer.Option("-f", "--filename", help="A file, a directory, or - for stdin.")
]
NamespaceOption = Annotated[str, typer.Option("-n", "--namespace", help="The namespace.")]
SelectorOption = Annotated[
    str | None, typer.Option("-l", "--selector", help="Label selector, e.g. app=name.")
]
OutputOption = Annotated[
    str | None, typer.Option("-o", "--output", help="wide, yaml, json or name.")
]


def fail(message: str, details: list[str] | None = None) -> NoReturn:
    """Print an error the way kubectl does (to stderr) and exit 1."""
    typer.echo(f"error: {message}" if not message.startswith("Error") else message, err=True)
    for line in details or []:
        typer.echo(line, err=True)
    raise typer.Exit(1)


def _details(error: SpecError) -> list[str]:
    """The problems to print under the error's own line, without repeating that line: a
    problem that restates it contributes only its fix."""
    headline = {str(error), f"error: {error}"}
    details = []
    for problem in error.problems:
        first, _, rest = problem.partition("\n")
        if first not in headline:
            details.append(problem)
        elif rest:
            details.append(rest)
    return details


@contextmanager
def guarded() -> Iterator[None]:
    """Turn every domain error into a clear message and a non-zero exit, never a traceback."""
    try:
        yield
    except SpecError as error:
        fail(str(error), _details(error))
    except (NotFoundError, AlreadyExistsError, ConflictError) as error:
        reason = type(error).__name__.removesuffix("Error")
        fail(f"Error from server ({reason}): {error}")
    except EbbtideError as error:
        fail(str(error))
    finally:
        while _open_clients:
            _open_clients.pop().close()


_open_clients: list[ControlPlaneClient] = []


def _client() -> ControlPlaneClient:
    """A client for this command; `guarded()` closes it when the command ends."""
    client = ControlPlaneClient(ebbtide_home())
    _open_clients.append(client)
    return client


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; `ebbtide down` stops it.")
    ] = False,
    gateway_port: Annotated[
        int, typer.Option(help="The gateway's port on 127.0.0.1 (0 picks a free one).")
    ] = 8080,
    profile: Annotated[
        str, typer.Option(help="Scaling defaults: local (seconds) or kubernetes (the HPA's).")
    ] = "local",
    dashboard_port: Annotated[
        int | None,
        typer.Option(help="The dashboard's port on 127.0.0.1 (default 8090, or a free one)."),
    ] = None,
    gateway_workers: Annotated[
        int,
        typer.Option(
            min=1, help="Gateway processes sharing the port (SO_REUSEPORT), up to one per core."
        ),
    ] = 1,
    systemd_unit: Annotated[
        bool,
        typer.Option(
            "--systemd-unit", help="Print a systemd unit that runs this control plane; start none."
        ),
    ] = False,
) -> None:
    """Run the local control plane (in the foreground unless --detach).

    With --detach a keeper starts it again after a crash; the gateway and the replicas run in
    processes of their own and keep serving meanwhile."""
    # Imported here, not at the top: the control plane pulls in the gateway, the controller and
    # the server stack, and every other command should start without paying for them.
    from ebbtide.autoscaler.profiles import PROFILES
    from ebbtide.daemon import control_plane, lifecycle

    home = ebbtide_home()
    with guarded():
        if profile not in PROFILES:
            fail(f"unknown profile {profile!r}; choose one of {', '.join(sorted(PROFILES))}")
        options = ["--gateway-port", str(gateway_port), "--profile", profile]
        options += ["--gateway-workers", str(gateway_workers)]
        if dashboard_port is not None:
            options += ["--dashboard-port", str(dashboard_port)]
        if systemd_unit:
            from ebbtide.daemon.systemd import systemd_unit as unit

            typer.echo(unit(home, options), nl=False)
            return
        if not detach:
            settings = control_plane.ControlPlaneSettings(
                gateway_port=gateway_port,
                profile=profile,
                gateway_workers=gateway_workers,
                dashboard_port=dashboard_port,
            )
            typer.echo(f"control plane serving on {socket_path(home)} (Ctrl-C stops it)")
            asyncio.run(control_plane.serve(home, settings))
            return
        started = lifecycle.start_detached(home, options)
        typer.echo(f"control plane running (pid {started.pid}); state in {home}")
        typer.echo(f"kept running by pid {started.keeper}, which restarts it after a crash")
        typer.echo(f"logs: {started.log}")


@app.command()
def dashboard(
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the URL only; open no browser.")
    ] = False,
) -> None:
    """Print the live dashboard's URL and open it in a browser where one exists."""
    from ebbtide.cli.browser import open_in_browser
    from ebbtide.dashboard.server import url_file

    home = ebbtide_home()
    with guarded():
        _client().health()  # says how to start a control plane when none runs
        try:
            url = url_file(home).read_text().strip()
        except FileNotFoundError:
            fail(f"the control plane for {home} serves no dashboard; restart it with `ebbtide up`")
        typer.echo(f"dashboard: {url} (read-only)")
        if not no_browser and not open_in_browser(url):
            typer.echo("no browser to open here; open the URL in one on this machine")


@app.command()
def restart() -> None:
    """Replace the running control plane with a new one (new code takes effect) while the
    gateway and the replicas keep serving; the new one adopts them."""
    from ebbtide.daemon import lifecycle

    home = ebbtide_home()
    with guarded():
        started = lifecycle.restart(home)
        typer.echo(f"control plane restarted (pid {started.pid}); the data plane kept serving")


@app.command()
def down() -> None:
    """Stop the local control plane and every replica it runs."""
    from ebbtide.daemon import lifecycle

    home = ebbtide_home()
    with guarded():
        pid = lifecycle.stop(home)
        if pid is None:
            typer.echo(f"no control plane is running for {home}")
        elif pid < 0:
            typer.echo("no control plane was running; stopped the replicas and gateway it left")
        else:
            typer.echo(f"control plane stopped (pid {pid})")


def load_endpoints(files: list[str]) -> tuple[list[InferenceEndpoint], list[str], str]:
    """Read and validate every document of every file; all or nothing. Returns the endpoints,
    the warnings, and a source label."""
    endpoints, warnings, errors, sources = [], [], [], []
    for given in files:
        for path in resource_files(given):
            text, source = read_text(path)
            sources.append(source)
            for document in parse_documents(text, source):
                try:
                    validated = validate(document)
                except SpecError as error:
                    errors.extend(error.problems)
                    continue
                endpoints.append(validated.endpoint)
                warnings.extend(validated.warnings)
    label = ", ".join(sources)
    if errors:
        raise SpecError(f"{label}: nothing was applied", errors)
    if not endpoints:
        raise SpecError(f"{label}: no InferenceEndpoint found in the input")
    return endpoints, warnings, label


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        typer.echo(warning, err=True)


@app.command("validate")
def validate_command(files: FilesOption) -> None:
    """Check resource files without applying them (needs no control plane)."""
    with guarded():
        count = 0
        for given in files:
            for path in resource_files(given):
                text, source = read_text(path)
                for document in parse_documents(text, source):
                    count += 1
                    if is_autoscaling_fragment(document.data):
                        autoscaling, warnings = validate_autoscaling_fragment(document)
                        _print_warnings(warnings)
                        normalized = autoscaling.model_dump(by_alias=True, exclude_none=True)
                        typer.echo(
                            f"{source}: valid autoscaling settings: {json.dumps(normalized)}"
                        )
                    else:
                        validated = validate(document)
                        _print_warnings(validated.warnings)
                        typer.echo(
                            f"{QUALIFIED_ENDPOINT}/{validated.endpoint.name} valid ({source})"
                        )
        if count == 0:
            fail("no document found in the input")


@app.command()
def apply(
    files: FilesOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show what would change; change nothing.")
    ] = False,
) -> None:
    """Create or update endpoints from files: all documents apply, or none does."""
    with guarded():
        endpoints, warnings, source = load_endpoints(files)
        _print_warnings(warnings)
        results = _client().apply([e.manifest() for e in endpoints], dry_run=dry_run, source=source)
        suffix = " (server dry run)" if dry_run else ""
        for result in results:
            typer.echo(f"{QUALIFIED_ENDPOINT}/{result['name']} {result['result']}{suffix}")


@app.command()
def get(
    resource: Annotated[str, typer.Argument(help="inferenceendpoints (ie), pods, hpa, events.")],
    name: Annotated[str | None, typer.Argument(help="One object's name.")] = None,
    namespace: NamespaceOption = "default",
    selector: SelectorOption = None,
    output: OutputOption = None,
) -> None:
    """List objects, or show one, as kubectl does."""
    with guarded():
        kind = _kind(resource)
        client = _client()
        now = datetime.now(UTC)
        if kind == "InferenceEndpoint":
            _get_endpoints(client, name, namespace, selector, output, now)
        else:
            _get_other(client, kind, name, namespace, selector, output, now)


def _kind(resource: str) -> str:
    try:
        return kind_of(resource)
    except ValueError as error:
        fail(str(error))


def _get_endpoints(
    client: Any,
    name: str | None,
    namespace: str,
    selector: str | None,
    output: str | None,
    now: datetime,
) -> None:
    if name:
        items = [client.get_endpoint(namespace, name)]
    else:
        items = client.list_endpoints(namespace, selector)
    _print_objects(
        items, output, name, namespace, lambda: endpoint_rows(items, now, output == "wide")
    )


def _get_other(
    client: Any,
    kind: str,
    name: str | None,
    namespace: str,
    selector: str | None,
    output: str | None,
    now: datetime,
) -> None:
    from ebbtide.cli import workloads

    items, render = workloads.collect(client, kind, name, namespace, selector, now, output)
    _print_objects(items, output, name, namespace, render)


def _print_objects(
    items: list[dict[str, Any]],
    output: str | None,
    name: str | None,
    namespace: str,
    render: Callable[[], str],
) -> None:
    if output in ("yaml", "json"):
        typer.echo(dump(items[0] if name else as_list(items), output))
    elif output == "name":
        for item in items:
            typer.echo(f"{_qualified(item)}/{item['metadata']['name']}")
    elif output not in (None, "wide"):
        fail(
            f'unable to match a printer suitable for the output format "{output}", '
            "allowed formats are: json, name, wide, yaml"
        )
    elif not items:
        typer.echo(f"No resources found in {namespace} namespace.", err=True)
    else:
        typer.echo(render())


def _qualified(item: dict[str, Any]) -> str:
    kind = item.get("kind", "")
    return QUALIFIED_ENDPOINT if kind == "InferenceEndpoint" else kind.lower()


@app.command()
def describe(
    resource: Annotated[str, typer.Argument(help="inferenceendpoint (ie).")],
    name: Annotated[str, typer.Argument(help="The endpoint's name.")],
    namespace: NamespaceOption = "default",
) -> None:
    """Show an endpoint in detail: spec, status, conditions, why it is (not) scaling, events."""
    with guarded():
        if _kind(resource) != "InferenceEndpoint":
            fail(f"describe supports inferenceendpoints only, not {resource!r}")
        client = _client()
        item = client.get_endpoint(namespace, name)
        events = client.events(namespace, name)
        pods = client.list_pods(namespace, f"app={name}")
        typer.echo(describe_view.render(item, events, pods, datetime.now(UTC)))


@app.command()
def delete(
    resource: Annotated[str | None, typer.Argument(help="inferenceendpoint (ie).")] = None,
    names: Annotated[list[str] | None, typer.Argument(help="Names to delete.")] = None,
    files: Annotated[
        list[str] | None, typer.Option("-f", "--filename", help="Delete what these files define.")
    ] = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Delete endpoints by name or by the files that define them; their replicas drain first."""
    with guarded():
        targets: list[tuple[str, str]] = []
        if files:
            endpoints, _, _ = load_endpoints(files)
            targets = [(e.namespace, e.name) for e in endpoints]
        elif resource and names:
            if _kind(resource) != "InferenceEndpoint":
                fail(f"delete supports inferenceendpoints only, not {resource!r}")
            targets = [(namespace, n) for n in names]
        else:
            fail("give a resource and name (`delete ie NAME`) or files (`delete -f FILE`)")
        client = _client()
        for target_namespace, target in targets:
            client.delete_endpoint(target_namespace, target)
            typer.echo(f'{QUALIFIED_ENDPOINT} "{target}" deleted')


@app.command("explain")
def explain_command(
    path: Annotated[str, typer.Argument(help="e.g. inferenceendpoint.spec.autoscaling")],
) -> None:
    """Document a field of the InferenceEndpoint resource, from its schema."""
    with guarded():
        typer.echo(explain(path), nl=False)


@app.command()
def schema() -> None:
    """Print the InferenceEndpoint JSON schema (the CRD is generated from the same models)."""
    json.dump(endpoint_json_schema(), sys.stdout, indent=2)
    typer.echo()


@app.command()
def top(
    resource: Annotated[str, typer.Argument(help="pods")],
    selector: SelectorOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """CPU and memory of each replica, as `kubectl top pods`."""
    with guarded():
        if _kind(resource) != "Pod":
            fail("top supports pods only")
        pods = _client().list_pods(namespace, selector)
        if not pods:
            # As kubectl: said on stderr, and not a failure.
            typer.echo(f"No resources found in {namespace} namespace.", err=True)
            return
        typer.echo(operate.pod_usage_table(pods))


@app.command()
def scale(
    resource: Annotated[str, typer.Argument(help="inferenceendpoint (ie)")],
    name: Annotated[str, typer.Argument(help="The endpoint's name.")],
    replicas: Annotated[int, typer.Option("--replicas", help="The replica count to set now.")],
    namespace: NamespaceOption = "default",
) -> None:
    """Set the replica count now. The autoscaler may change it again: `describe` says why."""
    with guarded():
        if _kind(resource) != "InferenceEndpoint":
            fail("scale supports inferenceendpoints only")
        client = _client()
        endpoint = client.get_endpoint(namespace, name)
        bounds = endpoint["spec"]["autoscaling"]
        low, high = bounds.get("minReplicas", 1), bounds["maxReplicas"]
        client.scale(namespace, name, replicas)
        typer.echo(f"{QUALIFIED_ENDPOINT}/{name} scaled")
        if not low <= replicas <= high:
            typer.echo(
                f"note: {replicas} is outside minReplicas..maxReplicas ({low}..{high}); the "
                "autoscaler will bring it back within bounds",
                err=True,
            )
        elif low < high:
            typer.echo(
                "note: autoscaling is active, so the next decision may change the count; to "
                f"pin it, set minReplicas and maxReplicas to {replicas}",
                err=True,
            )


@app.command()
def logs(
    pod: Annotated[str, typer.Argument(help="The replica (pod) name.")],
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
) -> None:
    """Print a replica's log."""
    with guarded(), suppress(KeyboardInterrupt):
        operate.follow_log(operate.log_path(pod), follow)


@app.command()
def predict(
    name: Annotated[str, typer.Argument(help="The endpoint's name.")],
    data: Annotated[
        str | None, typer.Option("-d", "--data", help="JSON body or @file; default: an example.")
    ] = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Send one inference request through the gateway and print the response."""
    with guarded():
        endpoint = _client().get_endpoint(namespace, name)
        url = operate.endpoint_url(endpoint)
        body = (
            operate.read_body(data)
            if data
            else operate.model_example(url, endpoint, random.Random(0))
        )
        response = httpx.post(url + operate.infer_path(endpoint), json=body, timeout=30)
        typer.echo(json.dumps(response.json(), indent=2))
        if response.status_code >= 400:
            raise typer.Exit(1)


@app.command()
def load(
    name: Annotated[str, typer.Argument(help="The endpoint's name.")],
    rate: Annotated[float | None, typer.Option(help="Constant requests per second.")] = None,
    duration: Annotated[float, typer.Option(help="Seconds (for --rate; caps --trace).")] = 30.0,
    steps: Annotated[
        str | None, typer.Option(help="Rate steps RATE:SECONDS,..., e.g. 10:20,40:30,10:20.")
    ] = None,
    trace: Annotated[
        Path | None, typer.Option(help="Replay a trace CSV (TIMESTAMP column).")
    ] = None,
    speedup: Annotated[float, typer.Option(help="Compress trace time this many times.")] = 1.0,
    rate_scale: Annotated[float, typer.Option(help="Multiply the trace's rate.")] = 1.0,
    data: Annotated[str | None, typer.Option("-d", "--data", help="JSON body or @file.")] = None,
    timeout: Annotated[float, typer.Option(help="Per-request timeout in seconds.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed for Poisson arrivals and trace scaling.")] = 0,
    namespace: NamespaceOption = "default",
) -> None:
    """Open-loop load: send at a constant rate, in steps, or replaying a trace; then summarize."""
    with guarded():
        endpoint = _client().get_endpoint(namespace, name)
        url = operate.endpoint_url(endpoint)
        arrivals = operate.build_schedule(rate, duration, steps, trace, speedup, rate_scale, seed)
        body = (
            operate.read_body(data)
            if data
            else operate.model_example(url, endpoint, random.Random(seed))
        )
        console = Console(stderr=True)
        for line in operate.run_load(
            url + operate.infer_path(endpoint), body, arrivals, console, timeout
        ):
            typer.echo(line)


from ebbtide.cli.kube import register as register_kube  # noqa: E402
from ebbtide.cli.models import register as register_models  # noqa: E402
from ebbtide.cli.simulate import simulate  # noqa: E402

register_kube(app)
register_models(app)
app.command("simulate")(simulate)
