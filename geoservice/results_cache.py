"""Answers of whole-city queries kept while the city's data has not changed.

Grid coverage, uncovered streets and grid gaps read every street, point and grid: seconds on a city of 100,000
points, and the city map and the planner ask for them on every visit. The database keeps a data version that every
change moves forward in the same transaction (migration 0002) — every change but a point's occupancy or notice,
which no whole-city answer reads (migration 0003: a kiosk's taps neither queue on the version nor retire answers).
An answer is stored under the version it was computed at and served again only while the version read by the asking
connection is the same. So a cached answer is never older than what the asker's own transaction can see, and a
change made by any process (an import, the CLI, another web worker) retires it at once, with no invalidation
messages between processes. Versions are never reused (they come from a sequence), so an answer computed from
changes later rolled back is never served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

T = TypeVar("T")
DEFAULT_MAX_ENTRIES = 64
_VERSION = sa.text("SELECT version FROM data_version")


def data_version(conn: Connection) -> int:
    """The data version ``conn`` sees: a new number after every statement that changes the city's data."""
    return conn.execute(_VERSION).scalar_one()


class ResultsCache:
    """A small LRU of query answers keyed by (data version, query); safe to share between threads.

    Answers are handed out as they were stored, not copied: callers serialise them and must not change them.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[int, Hashable], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conn: Connection, key: Hashable, compute: Callable[[], T]) -> T:
        """The answer for ``key`` at the data version ``conn`` sees, computed by ``compute()`` when not kept.

        Two requests for the same missing answer may both compute it; the answers are equal, so that costs time
        once, never correctness. Exceptions from ``compute`` (bad input) are not kept.
        """
        versioned = (data_version(conn), key)
        with self._lock:
            if versioned in self._entries:
                self._entries.move_to_end(versioned)
                self.hits += 1
                return self._entries[versioned]  # type: ignore[return-value]
            self.misses += 1
        answer = compute()
        with self._lock:
            self._entries[versioned] = answer
            self._entries.move_to_end(versioned)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return answer

    def clear(self) -> None:
        """Forget every answer."""
        with self._lock:
            self._entries.clear()
