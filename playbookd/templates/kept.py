"""A bounded memo for what a render worker keeps of pure functions' answers."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class Kept(Generic[K, V]):
    """What a worker keeps of a pure function's answers, bounded: entries weigh what their key and
    value hold, and a generation that reaches `budget` becomes the old one, the older dropped, so
    what every email asks for (the company's values, a template's shapes) stays while each
    email's own values pass through."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._young: dict[K, tuple[V, int]] = {}
        self._old: dict[K, tuple[V, int]] = {}
        self._weight = 0

    def get(self, key: K, default: D) -> V | D:
        found = self._young.get(key)
        if found is None:
            found = self._old.pop(key, None)
            if found is None:
                return default
            self.put(key, *found)
        return found[0]

    def put(self, key: K, value: V, weight: int) -> None:
        if self._weight + weight > self.budget:
            self._old, self._young, self._weight = self._young, {}, 0
        self._young[key] = (value, weight)
        self._weight += weight

    def __len__(self) -> int:
        return len(self._young) + len(self._old)
