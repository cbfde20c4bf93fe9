"""Read replicas: which PostgreSQL server a request reads from.

A city's readers are the public: the map, tiles, nearest points, OGC items. Their answers may be a moment stale, so
with ``GEOSERVICE_REPLICA_URLS`` set they are read from PostgreSQL streaming replicas of the primary (the replication
is PostgreSQL's own; nothing here copies data). The rule, per request (:func:`reads_from_replica`):

- a GET, HEAD or OPTIONS from the public — no ``uid`` in the session, no ``Authorization`` header — reads from a
  replica, taken in turn (round robin) among those in rotation;
- everything else uses the primary: every write, every login, and every request of a logged-in user or an API token,
  so that people read their own writes at once.

A replica that fails to connect is left out of the rotation for ``replica_retry_s`` seconds and the request reads from
the primary instead: the user sees no error. With every replica left out, everything reads from the primary.

Staleness stays consistent: the results cache and the HTTP validators are keyed by the data version read through the
request's own connection (``geoservice.results_cache``, ``geoservice.http_cache``), so a replica that lags serves the
answers of the version it has applied — never a newer cached answer mixed with its older rows, and never a 304 for a
version it has not reached. Versions come from a sequence on the primary and are replayed as they are, so a version
means the same data on every server.

What differs on a replica: the analysis slots (``geoservice.budget``) are advisory locks, which a hot standby keeps on
its own — ``analysis_slots`` then bounds the whole-city analyses running on *each* server, not on all of them
together. And a long query on a replica may be cancelled when it holds back the replay for longer than the replica's
``max_standby_streaming_delay`` (30 s by default, above every statement timeout of ``geoservice.budget``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that read; the public's requests with these may be answered from a replica."""

CONNECT_TIMEOUT_S = 2
"""libpq's connect timeout towards a replica (its minimum): a read that can go to the primary does not wait long."""


def reads_from_replica(method: str, headers: Mapping[str, str], session: Mapping) -> bool:
    """Whether a request may read from a replica: a read (:data:`READ_METHODS`) by the public.

    Args:
        method: the HTTP method.
        headers: the request headers (an ``Authorization`` header means an API token: the primary).
        session: the signed session (a ``uid`` means a logged-in user: the primary).
    """
    return method.upper() in READ_METHODS and "Authorization" not in headers and session.get("uid") is None


@dataclass
class Replica:
    """One replica and whether it is in the rotation."""

    engine: Engine
    left_out_until: float = 0.0
    """``time.monotonic()`` until which it is left out after failing to connect; 0 when in rotation."""

    @property
    def server(self) -> str:
        """Hosts, ports and database, without the role or password: safe to show."""
        url = self.engine.url
        hosts = url.query.get("host")
        if hosts:
            where = ",".join([hosts] if isinstance(hosts, str) else hosts)
        else:
            where = f"{url.host or 'localhost'}:{url.port or 5432}"
        return f"{where}/{url.database}"


class ReplicaSet:
    """The replicas an app reads from, in turn; safe to share between threads.

    Args:
        engines: one engine per replica (may be empty: everything reads from the primary).
        retry_s: seconds a replica that failed to connect is left out of the rotation.
        clock: monotonic clock (seconds).
    """

    def __init__(self, engines: Sequence[Engine], *, retry_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.replicas = [Replica(engine) for engine in engines]
        self.retry_s = retry_s
        self._clock = clock
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def in_rotation(self, replica: Replica) -> bool:
        """Whether ``replica`` is taken for reads now."""
        return replica.left_out_until <= self._clock()

    def connect(self) -> Connection | None:
        """A connection to the next replica in rotation, or None when none connects (read from the primary then).

        Each replica that fails to connect is left out for :attr:`retry_s` seconds; the next one is tried.
        """
        for _ in range(len(self.replicas)):
            with self._lock:
                replica = self.replicas[next(self._turn) % len(self.replicas)]
            if not self.in_rotation(replica):
                continue
            try:
                # Pre-ping replaces a pooled connection the replica dropped (a restart) by a new one, or raises.
                return replica.engine.connect()
            except sa.exc.DBAPIError as exc:
                replica.left_out_until = self._clock() + self.retry_s
                reason = type(getattr(exc, "orig", None) or exc).__name__
                log.warning("replica %s did not connect (%s); reading from the primary for %g s",
                            replica.server, reason, self.retry_s)
        return None

    def dispose(self) -> None:
        """Close every pooled connection to the replicas."""
        for replica in self.replicas:
            replica.engine.dispose()
