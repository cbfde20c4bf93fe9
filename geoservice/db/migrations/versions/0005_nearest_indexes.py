"""Indexes that keep a nearest search with a kind or "open now" from reading past every other point.

Revision ID: 0005
Revises: 0004

A nearest search walks a GiST index in distance order and drops what does not match. On the plain geometry index a
kind filter drops every point of the other kinds first (seven of eight in an even city; in a city with few kiosks,
thousands of points to reach each kiosk), and "open now" drops every point without hours:

- ``point_kind_geom_idx``: points by (kind, geom), ``btree_gist`` giving GiST the kind. The search walks
  one kind at a time in it (``kind = k`` is an index condition, the distance order still comes from the index), and
  a box around the spot with ``kind = ANY(…)`` is one bitmap scan over the kinds asked for.
- ``point_hours_geom_idx``: points that have opening hours (only they can be open now: a point without hours is
  "unknown", never open).

Neither is partial on ``status = 'open'`` (planned and closed points are few): as partial indexes matching every
nearest search, the planner took the (kind, geom) one for searches of every kind too, where the plain geometry index
is the better one.

Both index ``geom`` (lon/lat degrees), not ``geom::geography``: in PostGIS 3.3 a nearest-neighbour scan on the
geography index costs about three times one on the geometry index, and the search ranks exactly on the spheroid
afterwards anyway (``geoservice.nearest``). Amenity filters need nothing new: the GIN index on ``amenities`` answers
a rare amenity (73 of 100,000 points offer umbrellas in the bench city) and the planner sorts those few by
distance; a common one is met at once in distance order.

The indexes are built ``CONCURRENTLY``, outside the migration's transaction (docs/upgrading.md, "Mind the locks"):
a plain ``CREATE INDEX`` holds SHARE on ``point`` for the whole build, and every occupancy tap and edit waits for it
(about a minute per million points). A concurrent build lets them through; it scans the table twice and waits for
the transactions already writing to ``point`` (and, at its end, for any older snapshot in the database, e.g. a
running backup) to finish. A build that is interrupted leaves an INVALID index of its name, which PostgreSQL keeps
up to date but never reads: the next run drops it and builds again (``IF NOT EXISTS`` alone would keep it).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = {
    "point_kind_geom_idx": "ON point USING gist (kind, geom)",
    "point_hours_geom_idx": "ON point USING gist (geom) WHERE opening_hours <> ''",
}


def upgrade() -> None:
    # Transactional, committed when the autocommit block opens: the (kind, geom) index needs it.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    with op.get_context().autocommit_block():
        for name, definition in INDEXES.items():
            if _invalid(name):
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")


def downgrade() -> None:
    # btree_gist stays: other objects may have come to depend on it, and an unused extension costs nothing.
    with op.get_context().autocommit_block():
        for name in reversed(INDEXES):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def _invalid(name: str) -> bool:
    """Whether an index ``name`` exists and is INVALID: what a concurrent build that did not finish leaves."""
    return bool(op.get_bind().execute(sa.text(
        "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": name}).scalar())
