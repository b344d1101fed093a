"""Which work queue a free slot asks first: higher priorities first, lower ones never starved.

Smooth weighted round robin (the algorithm of nginx's upstream balancing) over the configured
queues with weights critical 8, high 4, normal 2, low 1: each free slot asks the rotation's pick
first, then the other queues from critical down. While every queue has work, 15 consecutive slots
take 8 critical, 4 high, 2 normal and 1 low task, so a flood of critical work slows low work down
but never stops it; when the picked queue is empty the slot simply takes the highest work there is.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.events.bus import PRIORITIES

WEIGHTS = {"critical": 8, "high": 4, "normal": 2, "low": 1}


class PriorityRotation:
    def __init__(self, queues: Sequence[str], weights: dict[str, int] | None = None) -> None:
        unknown = [q for q in queues if q not in PRIORITIES]
        if unknown or not queues:
            raise ValueError(f"queues must be a non-empty subset of {PRIORITIES}, got {list(queues)}")
        self.queues = [p for p in PRIORITIES if p in queues]  # highest first
        self.weights = {q: (weights or WEIGHTS)[q] for q in self.queues}
        self._current = dict.fromkeys(self.queues, 0)
        self._total = sum(self.weights.values())

    def pick(self) -> str:
        for queue in self.queues:
            self._current[queue] += self.weights[queue]
        chosen = max(self.queues, key=lambda q: self._current[q])  # ties: the higher priority
        self._current[chosen] -= self._total
        return chosen

    def order(self) -> list[str]:
        """The queues in the order one free slot should ask them."""
        first = self.pick()
        return [first, *(q for q in self.queues if q != first)]
