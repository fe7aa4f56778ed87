"""The queue of one device: requests kept in the order they will run.

A sorted list rather than a heap, because admission control needs what a heap
cannot give cheaply: how many requests would run before a new one (its insert
position), and taking a cancelled request out (find it by its key, delete it).
Both are a binary search plus a ``memmove`` of a few hundred pointers in C.
Not thread-safe: the scheduler holds its lock around every call.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Generic, TypeVar

T = TypeVar("T")

# A key orders the queue: (priority class, deadline, arrival sequence number).
# Smaller runs first; the sequence number makes every key unique, so the item
# itself is never compared and a key finds exactly one entry.
Key = tuple[int, float, int]


class JobQueue(Generic[T]):
    """Items ordered by ``Key``; ``pop`` gives the smallest."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[tuple[Key, T]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def position(self, key: Key) -> int:
        """How many queued items would run before an item with ``key``."""
        return bisect_left(self._entries, (key,))

    def insert(self, key: Key, item: T, position: int | None = None) -> None:
        """Queue ``item``; ``position`` may pass on what ``position(key)`` just returned."""
        if position is None:
            position = bisect_left(self._entries, (key,))
        self._entries.insert(position, (key, item))

    def pop(self) -> T:
        """Take the item that runs next (IndexError when empty)."""
        return self._entries.pop(0)[1]

    def remove(self, key: Key) -> T | None:
        """Take out the item queued with ``key``; None if it is no longer queued."""
        i = bisect_left(self._entries, (key,))
        if i < len(self._entries) and self._entries[i][0] == key:
            return self._entries.pop(i)[1]
        return None

    def keys(self) -> list[Key]:
        """The queued keys in run order (for tests and introspection)."""
        return [key for key, _ in self._entries]
