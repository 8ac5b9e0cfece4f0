"""How the test node turns a pod's container into a local process.

- The image names the program: `ebbtide:<tag>` (any registry prefix) runs the `ebbtide` of the
  Python environment the node runs in; every other image is refused.
- Each container runs in its own mount namespace (`unshare --mount`), where the pod's volumes
  are bind-mounted at their real `mountPath`s (read-only where asked), so `/models`, `/tmp` and
  `/var/run/secrets/kubernetes.io/serviceaccount` are private to the pod.
- `env` (with `valueFrom` field, secret and config-map references and `$(VAR)` expansion) is
  the container's whole environment, plus what a kubelet adds: `HOSTNAME` and the
  `KUBERNETES_SERVICE_*` variables, which point at the apiserver on loopback.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENVIRONMENT_BIN = Path(sys.executable).parent
IMAGE_PROGRAMS = {"ebbtide": ENVIRONMENT_BIN / "ebbtide"}
NODE_PROGRAM = (Path(__file__).resolve().parent.parent, Path(sys.prefix).resolve())
"""What an `ebbtide:*` image runs from: the checkout (its sources, for an editable install)
and the environment its program lives in. A pod's volume may not hide them."""
# The image's default command, as its Dockerfile's CMD gives it.
IMAGE_DEFAULT_COMMANDS = {"ebbtide": ["ebbtide", "--help"]}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerError(Exception):
    """A container that cannot start; `reason` becomes its waiting reason in the pod status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def image_repository(image: str) -> str:
    """`registry.example.com:5000/team/ebbtide:0.1.0@sha256:…` -> `ebbtide`."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def check_image(image: str) -> str:
    repository = image_repository(image)
    if repository not in IMAGE_PROGRAMS:
        known = ", ".join(f"{name}:*" for name in IMAGE_PROGRAMS)
        raise ContainerError(
            "ImageNotMapped",
            f"the test node runs only {known} images (as {IMAGE_PROGRAMS['ebbtide']}); image "
            f"{image!r} has no local program: use an ebbtide image",
        )
    return repository


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return REFERENCE.sub(replace, text)


def field_value(pod: dict[str, Any], path: str) -> str:
    metadata, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": status.get("podIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    labelled = FIELD_LABEL.match(path)
    if labelled:
        return str(metadata.get(labelled.group(1), {}).get(labelled.group(2), ""))
    raise ContainerError("CreateContainerConfigError", f"unsupported fieldRef {path!r}")


def resource_value(container: dict[str, Any], reference: dict[str, Any]) -> str:
    side, _, name = reference["resource"].partition(".")
    value = container.get("resources", {}).get(side, {}).get(name)
    if value is None:
        raise ContainerError(
            "CreateContainerConfigError",
            f"resourceFieldRef {reference['resource']!r}: the container sets no such amount",
        )
    return str(value)


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    lookup: Any,
    apiserver_port: int,
) -> dict[str, str]:
    """The container's environment. `lookup(kind, namespace, name)` reads a Secret or
    ConfigMap's decoded data, or None."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {
        "PATH": f"{ENVIRONMENT_BIN}:{SYSTEM_PATH}",
        "HOSTNAME": pod["metadata"]["name"],
        "HOME": "/root",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(apiserver_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(apiserver_port),
    }
    for source in container.get("envFrom", []):
        kind, reference = (
            ("secret", source["secretRef"])
            if "secretRef" in source
            else ("configmap", source.get("configMapRef", {}))
        )
        data = lookup(kind, namespace, reference.get("name", ""))
        if data is None and not reference.get("optional"):
            raise ContainerError(
                "CreateContainerConfigError", f"{kind} {reference.get('name')!r} not found"
            )
        for key, value in (data or {}).items():
            env[source.get("prefix", "") + key] = value
    for variable in container.get("env", []):
        name = variable["name"]
        if "value" in variable:
            env[name] = expand(str(variable["value"]), env)
            continue
        value_from = variable.get("valueFrom", {})
        if "fieldRef" in value_from:
            env[name] = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            env[name] = resource_value(container, value_from["resourceFieldRef"])
        else:
            kind, key_reference = (
                ("secret", value_from["secretKeyRef"])
                if "secretKeyRef" in value_from
                else ("configmap", value_from.get("configMapKeyRef", {}))
            )
            data = lookup(kind, namespace, key_reference.get("name", "")) or {}
            if key_reference.get("key") not in data:
                if key_reference.get("optional"):
                    continue
                raise ContainerError(
                    "CreateContainerConfigError",
                    f"env {name}: key {key_reference.get('key')!r} of {kind} "
                    f"{key_reference.get('name')!r} not found",
                )
            env[name] = data[key_reference["key"]]
    return env


def container_command(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """`command` + `args` with `$(VAR)` expanded; the image's default when unset (Docker's
    rules: `args` alone replace the default command, as the image has no ENTRYPOINT)."""
    repository = check_image(container.get("image", ""))
    command = container.get("command")
    args = container.get("args")
    if command is None:
        argv = list(args) if args is not None else list(IMAGE_DEFAULT_COMMANDS[repository])
    else:
        argv = [*command, *(args or [])]
    return [expand(str(part), env) for part in argv]


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def namespace_argv(
    mounts: list[Mount],
    stage: Path,
    working_dir: str,
    argv: list[str],
    keep: tuple[Path, ...] = NODE_PROGRAM,
) -> list[str]:
    """`argv` run in a private mount namespace holding `mounts`; it keeps the pid that
    `unshare` starts with (each step execs the next), so signals reach the program itself.

    Every source is first bound under `stage` (outside all targets), then onto its target, so
    a mount over, say, /tmp cannot hide a source that lives under /tmp. The paths of `keep`
    that a mount would hide (a checkout under /tmp, beneath an emptyDir at /tmp) are bound
    back at their own paths last, so the image's program still runs."""
    for target in (mount.target for mount in mounts):
        if str(stage) == target or str(stage).startswith(target.rstrip("/") + "/"):
            raise ContainerError(
                "CreateContainerConfigError", f"mountPath {target} would hide the node's {stage}"
            )
    steps: list[str] = _stage_hidden(mounts, stage, keep)
    staged = []
    for index, mount in enumerate(mounts):
        source, place = shlex.quote(str(mount.source)), shlex.quote(str(stage / str(index)))
        make = "mkdir -p" if mount.source.is_dir() else "touch"
        steps += [f"{make} {place}", f"mount --bind {source} {place}"]
        staged.append((place, mount))
    for place, mount in sorted(staged, key=lambda item: item[1].target.count("/")):
        target = shlex.quote(mount.target)
        if mount.source.is_dir():
            steps.append(f"mkdir -p {target}")
        else:
            steps.append(f"mkdir -p $(dirname {target}) && touch {target}")
        steps.append(f"mount --bind {place} {target}")
        if mount.read_only:
            steps.append(f"mount -o remount,bind,ro {target}")
    steps += _restore_hidden(mounts, stage, keep)
    steps.append(f"cd {shlex.quote(working_dir)}")
    steps.append('exec "$@"')
    script = " && ".join(steps)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *argv]


def _hidden(mounts: list[Mount], keep: tuple[Path, ...]) -> list[Path]:
    targets = [Path(mount.target) for mount in mounts]
    return [path for path in keep if any(path.is_relative_to(target) for target in targets)]


def _stage_hidden(mounts: list[Mount], stage: Path, keep: tuple[Path, ...]) -> list[str]:
    steps = []
    for index, path in enumerate(_hidden(mounts, keep)):
        place = shlex.quote(str(stage / f"keep-{index}"))
        steps += [f"mkdir -p {place}", f"mount --bind {shlex.quote(str(path))} {place}"]
    return steps


def _restore_hidden(mounts: list[Mount], stage: Path, keep: tuple[Path, ...]) -> list[str]:
    steps = []
    for index, path in enumerate(_hidden(mounts, keep)):
        place, target = shlex.quote(str(stage / f"keep-{index}")), shlex.quote(str(path))
        steps += [f"mkdir -p {target}", f"mount --bind {place} {target}"]
    return steps
