"""Database health and size: what /healthz, ``db status`` and ``demo load`` report.

/healthz is asked every few seconds by load balancers and monitors, so by default it reads only what the server
keeps at hand: versions, the schema revision, the data version and each table's estimated row count from the
planner's statistics (``pg_class.reltuples``, as of the last ANALYZE or autovacuum). Exact counts read every row of
every table (a large city: tens of milliseconds per call) and are given only on request (``?counts=exact``).

With read replicas (``geoservice.db.replicas``) it also tells, for each, whether it answers, whether it is in the
app's rotation (and if not, why: ``left_out``, as of this process's last attempt to connect and its last lag
measure), the data version it has applied and how far its replay is behind the primary — in bytes of WAL (the
primary's current position less the replica's replayed one) and in seconds (since the last transaction it replayed,
0 when it has replayed everything it received). One statement per replica, none reading a table but the
one-row ``data_version``.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geoservice.db.replicas import REPLAY_LAG_S, Replica, ReplicaSet
from geoservice.errors import InvalidParameter
from geoservice.models import TABLES
from geoservice.params import parse_choice

COUNTS = ("estimated", "exact")
"""What /healthz's ``counts`` parameter takes."""


def parse_counts(args: Mapping[str, str]) -> str:
    """/healthz's one parameter, ``counts`` (:data:`COUNTS`, default ``estimated``); anything else is refused."""
    unknown = sorted(set(args) - {"counts"})
    if unknown:
        raise InvalidParameter(f"unknown parameter {unknown[0]!r}; /healthz accepts: counts "
                               f"({' or '.join(COUNTS)})")
    return parse_choice("counts", args.get("counts"), COUNTS, default="estimated")


def row_counts(conn: Connection) -> dict[str, int]:
    """Exact row count of every table of the data model."""
    union = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
    return {name: count for name, count in conn.execute(sa.text(union))}


_ESTIMATED_COUNTS = ("(SELECT json_object_agg(c.relname, c.reltuples) FROM pg_class c WHERE c.relname = ANY(:tables) "
                     "AND c.relkind = 'r' AND c.relnamespace = to_regnamespace(current_schema()))")


def _estimates(reltuples: dict | None) -> dict[str, int | None]:
    # reltuples is -1 before a table's first ANALYZE (PostgreSQL 14 and later): not known, rather than a guess.
    found = reltuples or {}
    return {name: round(found[name]) if found.get(name, -1) >= 0 else None for name in TABLES}


def estimated_row_counts(conn: Connection) -> dict[str, int | None]:
    """Each table's row count as the planner's statistics have it; None for a table never analysed."""
    return _estimates(conn.execute(sa.text(f"SELECT {_ESTIMATED_COUNTS}"), {"tables": list(TABLES)}).scalar())


def database_health(conn: Connection, *, counts: str = "estimated") -> dict:
    """Versions of PostgreSQL, PostGIS and pgRouting, the schema revision, the data version and the row counts.

    Two statements (the second only on a migrated database), no table read unless ``counts`` is ``exact``.

    Args:
        conn: database connection.
        counts: ``estimated`` (``estimated_counts``, from statistics) or ``exact`` (``counts``: every table
            counted).
    """
    server = conn.execute(sa.text(
        "SELECT current_setting('server_version') AS postgres, postgis_lib_version() AS postgis, "
        "pgr_version() AS pgrouting, to_regclass('alembic_version') IS NOT NULL AS migrated, "
        "to_regclass('data_version') IS NOT NULL AS versioned"
    )).mappings().one()
    state: dict = {}
    if server["migrated"]:
        # The tables exist from the first migration on, the data version from 0004 on.
        columns = ["(SELECT version_num FROM alembic_version) AS revision", f"{_ESTIMATED_COUNTS} AS estimated"]
        if server["versioned"]:
            columns.append("(SELECT json_build_object('version', version, 'changed_at', changed_at) "
                           "FROM data_version) AS data_version")
        state = dict(conn.execute(sa.text(f"SELECT {', '.join(columns)}"), {"tables": list(TABLES)}).mappings().one())
    report = {
        "reachable": True,
        "postgres": server["postgres"],
        "postgis": server["postgis"],
        "pgrouting": server["pgrouting"],
        "schema_revision": state.get("revision"),
        "data_version": state.get("data_version"),
    }
    if counts == "exact":
        report["counts"] = row_counts(conn) if state else {}
    else:
        report["estimated_counts"] = _estimates(state.get("estimated")) if state else {}
    return report


class Unreachable(Exception):
    """The database did not answer; the message is safe to show (no URL, no password)."""


def probe(engine: Engine, *, timeout_s: float, counts: str = "estimated", replicas: ReplicaSet | None = None) -> dict:
    """Connect, and report :func:`database_health` within ``timeout_s`` seconds of server time.

    Args:
        engine: the primary's engine.
        timeout_s: statement timeout of each server's queries.
        counts: see :func:`database_health`.
        replicas: the app's read replicas, reported under ``replicas`` (:func:`replica_health`) when there are any.

    Raises:
        Unreachable: the connection or the queries failed.
    """
    try:
        with engine.connect() as conn:
            _limit(conn, timeout_s)
            report = database_health(conn, counts=counts)
            if replicas:
                primary_lsn = conn.execute(sa.text(
                    "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END")).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise Unreachable(f"database not reachable ({_reason(exc)})") from exc
    if replicas:
        report["replicas"] = [replica_health(replicas, replica, timeout_s=timeout_s, primary_lsn=primary_lsn)
                              for replica in replicas]
    return report


_REPLICA_STATE = sa.text(f"""
    SELECT pg_is_in_recovery() AS in_recovery,
           (SELECT version FROM data_version) AS data_version,
           CASE WHEN pg_is_in_recovery() THEN round(({REPLAY_LAG_S})::numeric, 3) END AS replay_lag_s,
           CASE WHEN pg_is_in_recovery()
                THEN greatest(pg_wal_lsn_diff(CAST(:primary_lsn AS pg_lsn), pg_last_wal_replay_lsn()), 0)
           END AS replay_lag_bytes,
           CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS replay_paused
""")


def replica_health(replicas: ReplicaSet, replica: Replica, *, timeout_s: float, primary_lsn: str | None) -> dict:
    """What one replica answers: reachable, in rotation (``left_out``: why not), data version, lag, paused.

    Args:
        replicas: the set ``replica`` belongs to (whether it is in the rotation).
        replica: one of ``replicas``.
        timeout_s: statement timeout of its query.
        primary_lsn: the primary's current WAL position (None: lag in bytes not known).
    """
    left_out = replicas.left_out(replica)
    report: dict = {"server": replica.server, "in_rotation": left_out is None}
    if left_out is not None:
        report["left_out"] = left_out
    try:
        with replica.engine.connect() as conn:
            _limit(conn, timeout_s)
            state = conn.execute(_REPLICA_STATE, {"primary_lsn": primary_lsn}).mappings().one()
    except sa.exc.SQLAlchemyError as exc:
        return {**report, "reachable": False, "error": f"replica not reachable ({_reason(exc)})"}
    lag_bytes = state["replay_lag_bytes"]
    return {**report, "reachable": True, "in_recovery": state["in_recovery"], "data_version": state["data_version"],
            "replay_lag_s": float(state["replay_lag_s"]) if state["replay_lag_s"] is not None else None,
            "replay_lag_bytes": int(lag_bytes) if lag_bytes is not None else None,
            "replay_paused": state["replay_paused"]}


def _limit(conn: Connection, timeout_s: float) -> None:
    conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(int(timeout_s * 1000))})


def _reason(exc: Exception) -> str:
    return type(getattr(exc, "orig", exc) or exc).__name__
