"""When a fresh replica passed each step of its start, for its log and for benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field

from ebbtide.core.clock import Clock


@dataclass
class StartTimeline:
    """Monotonic clock readings (`Clock.now()`) in the order the steps happened: `began` (the
    process runs ebbtide code), `imported` (the server stack), `resolved` (the model found in
    the repository), `startup` (the server about to bind), `loaded` (the model ready)."""

    clock: Clock
    marks: list[tuple[str, float]] = field(default_factory=list)

    @classmethod
    def begin(cls, clock: Clock) -> StartTimeline:
        return cls(clock, [("began", clock.now())])

    def mark(self, step: str) -> None:
        self.marks.append((step, self.clock.now()))

    def seconds(self) -> float:
        """From the first step to the last."""
        return self.marks[-1][1] - self.marks[0][1]

    def describe(self) -> str:
        """`phases began=T imported=T ...`: one token per step, monotonic seconds, so a tool
        on the same machine can line the steps up with its own clock."""
        return "phases " + " ".join(f"{step}={at:.6f}" for step, at in self.marks)
