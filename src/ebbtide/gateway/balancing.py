"""Which replica gets a request: a strategy with an injected random generator.

Power of two choices (Mitzenmacher): pick two replicas at random and send to the one with
fewer outstanding requests. It is nearly as good as asking every replica, costs two random
draws, and — unlike "least outstanding" — does not send a burst all to the same replica
that happened to be least loaded a moment ago.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Loaded(Protocol):
    """Anything with a count of requests sent to it and not yet answered."""

    @property
    def outstanding(self) -> int: ...


L = TypeVar("L", bound=Loaded)


class BalancingStrategy(Protocol):
    """Chooses one of a non-empty sequence of replicas that all have room for a request."""

    def choose(self, candidates: Sequence[L]) -> L: ...


class PowerOfTwoChoices:
    """Two distinct replicas drawn with `rng`; the less loaded wins, the first drawn on a tie.

    The same seed and the same sequence of loads give the same choices.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, candidates: Sequence[L]) -> L:
        count = len(candidates)
        if count == 1:
            return candidates[0]
        first = self._rng.randrange(count)
        second = self._rng.randrange(count - 1)
        if second >= first:
            second += 1
        a, b = candidates[first], candidates[second]
        return b if b.outstanding < a.outstanding else a
