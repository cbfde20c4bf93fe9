"""Loading a generated city (the Weidu demo or a benchmark city) into the database.

``load_city`` replaces every row of the data model with the city's, in the caller's transaction: it is
all-or-nothing and, because the generator is deterministic, loading the same city twice gives the same rows. The
tests and the benchmarks use it on databases of their own.

``load_demo`` is what ``geoservice demo load`` does, and it never replaces what a user made. It loads the demo
city into an empty database; a database that holds exactly the demo city (compared row by row with the generated
one) is left as it is; anything else is refused with :class:`NotTheDemo`, naming what loading would destroy, unless
``replace=True`` says to replace it. With ``if_empty=True`` (what ``make run`` asks for) a database with any data is
left alone without comparing. While it decides, the city's tables are locked against writers (readers go on), so an
import cannot slip in between the check and the load.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from geoalchemy2.shape import from_shape
from sqlalchemy.engine import Connection

from geoservice import catalogue, models
from geoservice.citygen import City, CitySpec, demo_spec, generate_city
from geoservice.errors import GeoserviceError
from geoservice.health import row_counts


class NotTheDemo(GeoserviceError):
    """The database holds data that is not the demo city; loading the demo would destroy it."""

    status = 409
    code = "NotTheDemo"

    def __init__(self, description: str, *, counts: dict[str, int], differing: tuple[str, ...]) -> None:
        super().__init__(description)
        self.counts = counts
        self.differing = differing


class NoSchema(GeoserviceError):
    """The database has not been migrated yet."""

    status = 503
    code = "NoSchema"


@dataclass(frozen=True)
class DemoLoad:
    """What :func:`load_demo` did.

    Attributes:
        outcome: ``loaded`` (the database was empty), ``replaced`` (``replace=True`` on data), ``unchanged`` (it
            already held exactly the demo city: nothing was written) or ``kept`` (``if_empty=True`` on a database
            with data: nothing was compared, nothing written).
        counts: the row count of every table afterwards.
    """

    outcome: str
    counts: dict[str, int]


def _rows_for_insert(rows: list[dict]) -> list[dict]:
    return [{**row, "geom": from_shape(row["geom"], srid=4326)} if "geom" in row else row for row in rows]


def _put_rows(conn: Connection, city: City) -> None:
    """Empty every table of the data model and insert ``city``'s rows (no sequence is moved outside the transaction).

    No CASCADE: a table outside the data model that references it makes this fail rather than be emptied too.
    """
    conn.execute(sa.text("TRUNCATE " + ", ".join(reversed(models.TABLES)) + " RESTART IDENTITY"))
    for name in models.TABLES:
        table = catalogue.TABLES[name]
        rows = getattr(city, table.id)  # the city holds each table under its catalogue id (districts, …)
        if rows:
            conn.execute(sa.insert(models.Base.metadata.tables[name]), _rows_for_insert(rows))


def load_city(conn: Connection, city: City) -> dict[str, int]:
    """Replace all data with ``city`` inside the caller's transaction; returns the row counts after."""
    _put_rows(conn, city)
    for name in models.TABLES:
        table = catalogue.TABLES[name]
        key = next(p for p in table.columns if p.name == table.key)
        if key.identity:  # rows came with their ids: the database numbers new ones after them
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', '{key.name}'), "
                                 f"coalesce(max({key.name}), 0) + 1, false) FROM {name}"))
    return row_counts(conn)


def table_checksums(conn: Connection) -> dict[str, str]:
    """An md5 per table over its rows in key order: equal checksums mean equal rows.

    The times the database keeps (``updated_at``, ``live_updated_at``) are left out.
    """
    union = " UNION ALL ".join(
        f"SELECT '{name}', md5(coalesce(string_agg(md5((to_jsonb(t) - 'updated_at' - 'live_updated_at')::text), '' "
        f"ORDER BY t.{catalogue.TABLES[name].key}), '')) FROM {name} t"
        for name in models.TABLES)
    return dict(conn.execute(sa.text(union)).all())


def load_demo(conn: Connection, spec: CitySpec | None = None, *, replace: bool = False,
              if_empty: bool = False) -> DemoLoad:
    """Load the Weidu demo city (or another generated ``spec``) without ever replacing what a user made.

    Args:
        conn: a connection inside the caller's transaction (the load commits with it).
        spec: the city to load; the Weidu demo when omitted.
        replace: replace whatever the database holds.
        if_empty: load only into an empty database; leave one with any data as it is (no comparison).

    Raises:
        NotTheDemo: the database holds rows that are not the city's, and neither ``replace`` nor ``if_empty`` was
            given.
        NoSchema: the tables do not exist (``geoservice db upgrade`` makes them).
    """
    _lock_against_writers(conn)
    before = row_counts(conn)
    if not any(before.values()):
        return DemoLoad("loaded", load_city(conn, generate_city(spec or demo_spec())))
    if if_empty:
        return DemoLoad("kept", before)
    city = generate_city(spec or demo_spec())
    if replace:
        return DemoLoad("replaced", load_city(conn, city))
    differing = _differing_tables(conn, city, before)
    if differing:
        raise NotTheDemo(describe_data(before, differing), counts=before, differing=differing)
    return DemoLoad("unchanged", before)


def _lock_against_writers(conn: Connection) -> None:
    missing = [n for n in models.TABLES if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": n}).scalar() is None]
    if missing:
        raise NoSchema(f"the database has no table {', '.join(missing)}; run 'geoservice db upgrade' first")
    # EXCLUSIVE lets readers (the served map) go on and makes writers (an import) wait until this transaction ends.
    conn.execute(sa.text(f"LOCK TABLE {', '.join(models.TABLES)} IN EXCLUSIVE MODE"))


def _differing_tables(conn: Connection, city: City, counts: dict[str, int]) -> tuple[str, ...]:
    """The tables whose rows are not ``city``'s.

    By count first; when every count agrees, by checksum against the city put in a savepoint that is then rolled
    back, so nothing changes whatever the answer (TRUNCATE ... RESTART IDENTITY is undone with it; no sequence is
    set outside the transaction).
    """
    order = tuple(reversed(models.TABLES))  # the most numerous first: points, streets, grids, …
    by_count = tuple(n for n in order if counts[n] != len(getattr(city, catalogue.TABLES[n].id)))
    if by_count:
        return by_count
    theirs = table_checksums(conn)
    savepoint = conn.begin_nested()
    try:
        _put_rows(conn, city)
        ours = table_checksums(conn)
    finally:
        savepoint.rollback()
    return tuple(n for n in order if theirs[n] != ours[n])


def describe_data(counts: dict[str, int], differing: tuple[str, ...]) -> str:
    """``the database holds 173 points, 3,893 streets, … that are not the demo city (points differ from it)``."""
    held = [_amount(n, counts[n]) for n in reversed(models.TABLES) if counts[n]]
    listed = ", ".join(held[:-1]) + f" and {held[-1]}" if len(held) > 1 else held[0]
    differ = ", ".join(catalogue.TABLES[n].id for n in differing)
    return f"the database holds {listed} that are not the demo city ({differ} differ from it)"


def _amount(name: str, count: int) -> str:
    return f"{count:,} {name if count == 1 else catalogue.TABLES[name].id}"
