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

Staleness is bounded: a replica whose replay lags more than ``replica_max_lag_s`` seconds behind is left out too, and
taken back once it has caught up. Each process measures a replica's lag at most once a second (:data:`LAG_CHECK_S`, one
statement on the connection a request then reads through, never one per request), on the replica itself: 0 when it has
replayed everything it has received — an idle primary sends nothing, however old the last transaction it replayed — else
the time since the last transaction it replayed was committed (since it started, when it has replayed none since). A
replica whose WAL receiver has not been streaming for longer than the bound is left out as well: cut off from the
primary, it cannot know how far behind it is. (After the primary was idle, the measure over-states the lag by up to that
idle time until the replica has replayed the first new write; and it counts only the WAL the replica has received.)

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
import math
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

LAG_CHECK_S = 1.0
"""Seconds between two measures of a replica's replay lag by one process (``ReplicaSet.max_lag_s``)."""

REPLAY_LAG_S = """
    CASE WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0.0
         -- Nothing replayed since it started: its data is no newer than its start.
         ELSE extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))
    END"""
"""SQL: a server in recovery's replay lag in seconds — 0 when it has replayed all it received (a replica of an idle
primary is not behind, however old its last transaction), else the age of the last transaction it replayed. The one
measure of lag: the rotation (:class:`ReplicaSet`) and ``/healthz`` (``geoservice.health``) both use it."""

_REPLAY_STATE = sa.text(f"""
    SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0.0  -- promoted: it is a primary now
                ELSE {REPLAY_LAG_S}
           END AS lag_s,
           NOT pg_is_in_recovery() OR EXISTS (
               -- The app's role sees a receiver's pid but not its status (that takes pg_read_all_stats); a receiver
               -- is shown only once it has connected to the primary.
               SELECT 1 FROM pg_stat_wal_receiver WHERE coalesce(status, 'streaming') = 'streaming') AS streaming
""")
"""A replica's replay lag in seconds, and whether it streams from the primary."""


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
    failure: str = ""
    """Why it last failed to connect (the error's class name)."""
    lagging: str | None = None
    """Why it is left out for lagging, as of its last measure; None when it keeps within the bound."""
    lag_measured_at: float = -math.inf
    """``time.monotonic()`` of its last lag measure."""
    not_streaming_since: float | None = None
    """``time.monotonic()`` of the first measure that found its WAL receiver not streaming; None while it streams."""

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
        max_lag_s: a replica whose replay lags more than this many seconds is left out until it catches up; None:
            any lag is borne (the lag is not measured).
        clock: monotonic clock (seconds).
    """

    def __init__(self, engines: Sequence[Engine], *, retry_s: float, max_lag_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.replicas = [Replica(engine) for engine in engines]
        self.retry_s = retry_s
        self.max_lag_s = max_lag_s
        self._clock = clock
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def left_out(self, replica: Replica) -> str | None:
        """Why ``replica`` is out of the rotation now (as of its last connection attempt and lag measure), or None."""
        if replica.left_out_until > self._clock():
            return f"did not connect ({replica.failure})"
        return replica.lagging

    def in_rotation(self, replica: Replica) -> bool:
        """Whether ``replica`` is taken for reads now."""
        return self.left_out(replica) is None

    def connect(self) -> Connection | None:
        """A connection to the next replica in rotation, or None when none connects (read from the primary then).

        Each replica that fails to connect is left out for :attr:`retry_s` seconds, and one that lags more than
        :attr:`max_lag_s` until a measure finds it caught up; the next one is tried.
        """
        for _ in range(len(self.replicas)):
            with self._lock:
                replica = self.replicas[next(self._turn) % len(self.replicas)]
            conn = self._take(replica)
            if conn is not None:
                return conn
        return None

    def _take(self, replica: Replica) -> Connection | None:
        if replica.left_out_until > self._clock():
            return None
        measure = self._measure_due(replica)
        if replica.lagging and not measure:
            return None
        conn = None
        try:
            # Pre-ping replaces a pooled connection the replica dropped (a restart) by a new one, or raises.
            conn = replica.engine.connect()
            if measure:
                self._measure_lag(replica, conn)
        except sa.exc.DBAPIError as exc:
            if conn is not None:
                conn.close()
            replica.left_out_until = self._clock() + self.retry_s
            replica.failure = type(getattr(exc, "orig", None) or exc).__name__
            log.warning("replica %s did not connect (%s); reading from the primary for %g s",
                        replica.server, replica.failure, self.retry_s)
            return None
        if replica.lagging:
            conn.close()
            return None
        return conn

    def _measure_due(self, replica: Replica) -> bool:
        """Whether to measure ``replica``'s lag now; claims the measure (one thread measures, the others do not)."""
        if self.max_lag_s is None:
            return False
        with self._lock:
            now = self._clock()
            if now - replica.lag_measured_at < LAG_CHECK_S:
                return False
            replica.lag_measured_at = now
            return True

    def _measure_lag(self, replica: Replica, conn: Connection) -> None:
        state = conn.execute(_REPLAY_STATE).one()
        conn.rollback()  # the request begins its own transaction (its own now())
        now = self._clock()
        if state.streaming:
            replica.not_streaming_since = None
        elif replica.not_streaming_since is None:
            replica.not_streaming_since = now
        lagging = None
        if state.lag_s is not None and float(state.lag_s) > self.max_lag_s:
            lagging = f"replay lag {_seconds(state.lag_s)} s > {_seconds(self.max_lag_s)} s"
        elif replica.not_streaming_since is not None and now - replica.not_streaming_since > self.max_lag_s:
            lagging = (f"WAL receiver not streaming for {_seconds(now - replica.not_streaming_since)} s > "
                       f"{_seconds(self.max_lag_s)} s")
        if lagging and not replica.lagging:
            log.warning("replica %s left out of the rotation: %s; reading from the others or the primary",
                        replica.server, lagging)
        elif replica.lagging and not lagging:
            log.warning("replica %s back in the rotation: caught up (%s before)", replica.server, replica.lagging)
        replica.lagging = lagging

    def dispose(self) -> None:
        """Close every pooled connection to the replicas."""
        for replica in self.replicas:
            replica.engine.dispose()


def _seconds(value: float) -> str:
    # Up to the tenth: a lag just past the bound never reads as the bound itself.
    return f"{math.ceil(float(value) * 10) / 10:g}"
