"""The city-scale database the opt-in scale runs use (``make test-scale``, the map and OGC benches).

A generated city of 1,000,000 points (160 × 160 blocks: 51,451 streets, 5,966 grids) in a database of its own,
``geoservice_city_1m`` in the embedded cluster (or on ``DATABASE_URL``'s server). Generating and loading it takes
about 4 minutes on the bench machine, so it is made once and reused while it holds the city asked for.

Run: ``.venv/bin/python -m bench.scale_city [--points 1000000] [--blocks 160]`` (prints the database's URL).
"""

from __future__ import annotations

import argparse

import sqlalchemy as sa

from bench.common import bench_database, bench_engine

NAME = "geoservice_city_1m"
POINTS = 1_000_000
BLOCKS = 160


def scale_city(*, name: str = NAME, points: int = POINTS, blocks: int = BLOCKS):
    """An engine on the scale city's database, generating and loading the city if it is not there yet."""
    engine = bench_database(name)  # migrated to the head
    with engine.connect() as conn:
        held = conn.execute(sa.text("SELECT count(*) FROM point")).scalar_one()
        streets = conn.execute(sa.text("SELECT count(*) FROM street")).scalar_one()
    if held == points and streets > 0:
        return engine
    engine.dispose()
    engine, _ = bench_engine(blocks=blocks, points=points, name=name)
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=POINTS)
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    args = parser.parse_args()
    engine = scale_city(points=args.points, blocks=args.blocks)
    print(engine.url.render_as_string(hide_password=True))


if __name__ == "__main__":
    main()
