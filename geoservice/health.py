"""Database health and size: what /healthz, ``db status`` and ``demo load`` report."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geoservice.models import TABLES


def row_counts(conn: Connection) -> dict[str, int]:
    """Exact row count of every table of the data model."""
    union = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
    return {name: count for name, count in conn.execute(sa.text(union))}


def database_health(conn: Connection) -> dict:
    """Versions of PostgreSQL, PostGIS and pgRouting, the schema revision and the row counts."""
    versions = conn.execute(sa.text(
        "SELECT current_setting('server_version') AS postgres, postgis_lib_version() AS postgis, "
        "pgr_version() AS pgrouting"
    )).mappings().one()
    revision = conn.execute(sa.text(
        "SELECT version_num FROM alembic_version"
    )).scalar() if conn.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar() else None
    return {
        "reachable": True,
        "postgres": versions["postgres"],
        "postgis": versions["postgis"],
        "pgrouting": versions["pgrouting"],
        "schema_revision": revision,
        "counts": row_counts(conn) if revision else {},
    }


class Unreachable(Exception):
    """The database did not answer; the message is safe to show (no URL, no password)."""


def probe(engine: Engine, *, timeout_s: float) -> dict:
    """Connect, and report :func:`database_health` within ``timeout_s`` seconds of server time.

    Raises:
        Unreachable: the connection or the queries failed.
    """
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"),
                         {"ms": str(int(timeout_s * 1000))})
            return database_health(conn)
    except sa.exc.SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", exc) or exc).__name__
        raise Unreachable(f"database not reachable ({reason})") from exc
