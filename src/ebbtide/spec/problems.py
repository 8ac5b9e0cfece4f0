"""One validation problem: where it is, what is wrong, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ebbtide.core.errors import SpecError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """A finding about a document. Errors block an apply; warnings print and do not."""

    severity: Severity
    path: str
    message: str
    fix: str = ""
    source: str = "<input>"
    line: int | None = None

    def render(self) -> str:
        """`error: file.yaml:9: spec.autoscaling.minReplicas: ... \\n  fix: ...`."""
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        field = f" {self.path}:" if self.path else ""
        text = f"{self.severity}: {where}:{field} {self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text


def raise_if_errors(problems: list[Problem], source: str) -> None:
    """Raise one `SpecError` listing every error found, so a user fixes them all in one go."""
    errors = [problem for problem in problems if problem.severity == "error"]
    if errors:
        count = f"{len(errors)} error" + ("s" if len(errors) > 1 else "")
        raise SpecError(f"{source} is invalid ({count})", [e.render() for e in errors])
