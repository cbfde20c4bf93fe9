"""Loading a generated city (the Weidu demo or a benchmark city) into the database.

``load_city`` replaces every row of the data model with the city's, in the caller's transaction: it is
all-or-nothing and, because the generator is deterministic, loading the same city twice gives the same rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from geoalchemy2.shape import from_shape
from sqlalchemy.engine import Connection

from geoservice import catalogue, models
from geoservice.citygen import City, CitySpec, demo_spec, generate_city
from geoservice.health import row_counts


def _rows_for_insert(rows: list[dict]) -> list[dict]:
    return [{**row, "geom": from_shape(row["geom"], srid=4326)} if "geom" in row else row for row in rows]


def load_city(conn: Connection, city: City) -> dict[str, int]:
    """Replace all data with ``city`` inside the caller's transaction; returns the row counts after."""
    conn.execute(sa.text("TRUNCATE " + ", ".join(reversed(models.TABLES)) + " RESTART IDENTITY CASCADE"))
    for name in models.TABLES:
        table = catalogue.TABLES[name]
        rows = getattr(city, table.id)  # the city holds each table under its catalogue id (districts, …)
        if rows:
            conn.execute(sa.insert(models.Base.metadata.tables[name]), _rows_for_insert(rows))
    for name in models.TABLES:
        table = catalogue.TABLES[name]
        key = next(p for p in table.columns if p.name == table.key)
        if key.identity:  # rows came with their ids: the database numbers new ones after them
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', '{key.name}'), "
                                 f"coalesce(max({key.name}), 0) + 1, false) FROM {name}"))
    return row_counts(conn)


def load_demo(conn: Connection, spec: CitySpec | None = None) -> dict[str, int]:
    """Load the Weidu demo city (or another spec) into the database; returns the row counts."""
    return load_city(conn, generate_city(spec or demo_spec()))
