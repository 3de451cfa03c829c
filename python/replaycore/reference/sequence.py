"""Per-run sequence counters (SPEC section 3), pure Python."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from replaycore._checks import MAX_COUNTER, in_range, integer, type_error
from replaycore.errors import InvalidArgument

__all__ = ["SequenceGenerator"]


class SequenceGenerator:
    """Hands out 1, 2, 3 ... independently per run id.

    Counters never go backwards and never reset while the object lives.
    Every method is thread-safe: N threads calling :meth:`next` on one run
    get each value exactly once. Counters hold at most ``2**63 - 1``.

    >>> seq = SequenceGenerator()
    >>> [seq.next("A"), seq.next("B"), seq.next("A")]
    [1, 1, 2]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"SequenceGenerator(runs={len(self._counters)})"

    def next(self, run_id: str) -> int:
        """The next value for ``run_id`` (1 for an unseen run)."""
        if not isinstance(run_id, str):
            type_error("run_id", "a str", run_id)
        with self._lock:
            value = self._counters.get(run_id, 0) + 1
            if value > MAX_COUNTER:
                raise InvalidArgument(
                    f"run_id {run_id!r}: sequence would exceed {MAX_COUNTER}", "run_id", run_id
                )
            self._counters[run_id] = value
        return value

    def peek(self, run_id: str) -> int:
        """The last value handed out for ``run_id``, 0 when unseen. Advances nothing."""
        if not isinstance(run_id, str):
            type_error("run_id", "a str", run_id)
        return self._counters.get(run_id, 0)

    def next_block(self, run_id: str, n: int) -> range:
        """Reserve ``n`` consecutive values for ``run_id`` in one step.

        Returns them as a ``range``; ``n == 0`` returns an empty range and
        reserves nothing. A negative ``n`` raises ``InvalidArgument``.
        """
        if not isinstance(run_id, str):
            type_error("run_id", "a str", run_id)
        count = integer(n, "n")
        with self._lock:
            start = self._counters.get(run_id, 0) + 1
            if count < 0 or start - 1 + count > MAX_COUNTER:
                raise InvalidArgument(
                    f"n must be >= 0 and keep the counter <= {MAX_COUNTER}, got {count}", "n", n
                )
            if count:
                self._counters[run_id] = start - 1 + count
        return range(start, start + count)

    def observe(self, run_id: str, seq: int) -> None:
        """Raise the counter of ``run_id`` to at least ``seq`` (never lowers it).

        Use it when resuming from a journal or ledger whose last sequence is
        known. The run is recorded even when ``seq`` is 0.
        """
        if not isinstance(run_id, str):
            type_error("run_id", "a str", run_id)
        value = in_range(seq, "seq", 0, MAX_COUNTER)
        with self._lock:
            self._counters[run_id] = max(self._counters.get(run_id, 0), value)

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, to persist and later pass to :meth:`from_snapshot`."""
        with self._lock:
            return dict(self._counters)

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, int], /) -> SequenceGenerator:
        """A generator whose counters start from ``snapshot``.

        Keys must be ``str`` and values ints in ``0..=2**63 - 1``.
        """
        if not isinstance(snapshot, Mapping):
            type_error("snapshot", "a mapping of str to int", snapshot)
        counters: dict[str, int] = {}
        for run_id, value in snapshot.items():
            if not isinstance(run_id, str):
                type_error("snapshot", "a mapping with str keys", run_id)
            counters[run_id] = in_range(value, f"snapshot[{run_id!r}]", 0, MAX_COUNTER)
        generator = cls()
        generator._counters = counters
        return generator
