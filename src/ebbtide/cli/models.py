"""`ebbtide model add|list|show|sample` and `ebbtide serve-model`: the model repository and
one replica, usable without a control plane."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ebbtide.cli.output import table
from ebbtide.core.errors import EbbtideError
from ebbtide.runtime.repository import (
    FORMATS,
    REPOSITORY_ENV,
    ModelLocation,
    ModelMetadata,
    ModelRepository,
    check_name,
    check_version,
    parse_reference,
)
from ebbtide.runtime.samples import SAMPLES, ensure_sample

if TYPE_CHECKING:
    from ebbtide.runtime.tensors import Signature

model_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="The model repository: `<repository>/<name>/<version>/` with a model file.",
)

RepositoryOption = Annotated[
    Path | None,
    typer.Option(
        "--repository",
        envvar=REPOSITORY_ENV,
        help="The repository root (default $EBBTIDE_HOME/models).",
    ),
]


def _fail(error: EbbtideError | ValueError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


@model_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The model's name, e.g. my-ml-model.")],
    version: Annotated[str, typer.Argument(help="The version, e.g. v1.")],
    path: Annotated[Path, typer.Argument(help="A model file, or a folder holding model.*.")],
    model_format: Annotated[
        str | None, typer.Option("--format", help=f"One of {', '.join(FORMATS)}; else guessed.")
    ] = None,
    description: Annotated[str, typer.Option(help="A line saying what the model does.")] = "",
    replace: Annotated[bool, typer.Option(help="Overwrite an existing version.")] = False,
    repository: RepositoryOption = None,
) -> None:
    """Copy a model into the repository as NAME VERSION."""
    try:
        if model_format is not None and model_format not in FORMATS:
            raise ValueError(f"unknown format {model_format!r}; use one of {', '.join(FORMATS)}")
        metadata = ModelMetadata(format=model_format, description=description)
        location = ModelRepository(repository).add(name, version, path, metadata, replace)
    except (EbbtideError, ValueError) as error:
        raise _fail(error) from None
    typer.echo(f"model {location.reference} added ({location.format}, {location.directory})")


@model_app.command("list")
def list_models(repository: RepositoryOption = None) -> None:
    """Every model version in the repository."""
    repo = ModelRepository(repository)
    locations = repo.all()
    if not locations:
        typer.echo(f"No models found in {repo.root}.", err=True)
        return
    rows = [
        [
            loc.name,
            loc.version,
            loc.format,
            _size(loc.model_file.stat().st_size),
            loc.metadata.description[:60],
        ]
        for loc in locations
    ]
    typer.echo(table(["NAME", "VERSION", "FORMAT", "SIZE", "DESCRIPTION"], rows))


@model_app.command("show")
def show(
    reference: Annotated[str, typer.Argument(help="NAME or NAME:VERSION (default: newest).")],
    repository: RepositoryOption = None,
) -> None:
    """A model version's files, format, description and input/output signature."""
    try:
        name, version = parse_reference(reference)
        repo = ModelRepository(repository)
        location = repo.resolve(name, version)
        signature, source = _signature(location)
    except EbbtideError as error:
        raise _fail(error) from None
    lines = [
        f"Name:         {location.name}",
        f"Version:      {location.version}",
        f"Versions:     {', '.join(repo.versions(location.name))}",
        f"Format:       {location.format}",
        f"Path:         {location.model_file}",
        f"Size:         {_size(location.model_file.stat().st_size)}",
        f"Description:  {location.metadata.description or '<none>'}",
        f"Signature:    ({source})",
    ]
    rows = [
        [kind, spec.name, spec.datatype, str(list(spec.shape))]
        for kind, specs in (("input", signature.inputs), ("output", signature.outputs))
        for spec in specs
    ]
    lines.append(
        "  " + table(["TENSOR", "NAME", "DATATYPE", "SHAPE"], rows).replace("\n", "\n  ")
        if rows
        else "  any inputs and outputs (a Python model without a declared signature)"
    )
    typer.echo("\n".join(lines))


def _signature(location: ModelLocation) -> tuple[Signature, str]:
    declared = location.metadata.signature
    if declared is not None and declared.inputs and declared.outputs:
        return declared, "from metadata.yaml"
    from ebbtide.runtime.loaders import create_model

    model = create_model(location)
    asyncio.run(model.load())
    return model.signature, "read from the model"


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size //= 1024
    return f"{size:.1f}GiB"


@model_app.command("sample")
def sample_command(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(SAMPLES)}.")],
    as_reference: Annotated[
        str | None,
        typer.Option("--as", help="Store it as NAME:VERSION (default sample-KIND:v1)."),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Retrain and overwrite if it exists.")] = False,
    repository: RepositoryOption = None,
) -> None:
    """Train a sample model on data bundled with scikit-learn and add it to the repository."""
    try:
        name, version = parse_reference(as_reference) if as_reference else (None, None)
        location, trained = ensure_sample(
            kind, ModelRepository(repository), name, version or "v1", replace
        )
    except EbbtideError as error:
        raise _fail(error) from None
    verb = "trained and added" if trained else "already present"
    typer.echo(f"model {location.reference} {verb} ({kind} sample, {location.directory})")


def serve_model(
    reference: Annotated[str, typer.Argument(help="NAME or NAME:VERSION.")],
    version: Annotated[str | None, typer.Option(help="The version, instead of :VERSION.")] = None,
    repository: RepositoryOption = None,
    host: Annotated[str, typer.Option(help="TCP host.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="TCP port (default 8080).")] = None,
    unix: Annotated[str | None, typer.Option(help="A unix socket path instead of TCP.")] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Turn on adaptive batching: the most rows per call.")
    ] = None,
    max_latency_ms: Annotated[
        float, typer.Option(help="With batching: the longest a request waits.")
    ] = 5.0,
    max_body_bytes: Annotated[
        int | None, typer.Option(help="Larger bodies get 413 (default 16 MiB).")
    ] = None,
    drain_seconds: Annotated[
        float, typer.Option(help="After SIGTERM, report not-ready this long first.")
    ] = 0.0,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve one model (Open Inference Protocol v2 + KServe v1) until SIGTERM drains it.

    The `ebbtide` command hands `serve-model` to the model server before this framework is
    imported (ebbtide.console); this is the same, reached from the CLI app itself."""
    try:
        name, in_reference = parse_reference(reference)
        chosen = version or in_reference
        if chosen:
            check_version(chosen)
        check_name(name)
    except EbbtideError as error:
        raise _fail(error) from None
    argv = [name if not chosen else f"{name}:{chosen}", "--host", host]
    options = {
        "--repository": repository,
        "--port": port,
        "--unix": unix,
        "--max-batch-size": max_batch_size,
        "--max-latency-ms": max_latency_ms if max_batch_size else None,
        "--max-body-bytes": max_body_bytes,
        "--drain-seconds": drain_seconds,
    }
    for flag, value in options.items():
        if value is not None:
            argv += [flag, str(value)]
    if access_log:
        argv.append("--access-log")
    from ebbtide.runtime.cli import main as run_replica

    raise typer.Exit(run_replica(argv, prog="ebbtide serve-model"))


def register(app: typer.Typer) -> None:
    """Add `model ...` and `serve-model` to the `ebbtide` command."""
    app.add_typer(model_app, name="model")
    app.command("serve-model")(serve_model)
