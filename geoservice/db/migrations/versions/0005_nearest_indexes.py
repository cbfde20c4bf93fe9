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
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE EXTENSION IF NOT EXISTS btree_gist;
        CREATE INDEX point_kind_geom_idx ON point USING gist (kind, geom);
        CREATE INDEX point_hours_geom_idx ON point USING gist (geom) WHERE opening_hours <> '';
    """)


def downgrade() -> None:
    # btree_gist stays: other objects may have come to depend on it, and an unused extension costs nothing.
    op.execute("""
        DROP INDEX point_hours_geom_idx;
        DROP INDEX point_kind_geom_idx;
    """)
