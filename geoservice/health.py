"""Database health and size: what /healthz, ``db status`` and ``demo load`` report."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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
