"""Nearest-point query: geoservice's index-assisted search against a full-scan baseline, side by side.

Baseline: what a hand-written query typically does — ORDER BY ST_Distance(geography) LIMIT k over the whole
point table (exact, but reads every row). geoservice: KNN ordering on the geography GiST index (``<->``) to take a
small candidate pool, then exact spheroidal distances. Both must return the same ids; the bench checks that.

Run: ``.venv/bin/python -m bench.bench_nearest [--points 100000] [--spots 50]``. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import random
from datetime import datetime

import sqlalchemy as sa

from bench.common import BENCH_METRIC_CRS, bench_engine, city_arguments, machine, median_ms, write_section
from geoservice.nearest import NearestQuery, nearest_points

BASELINE = sa.text("""
    SELECT id FROM point WHERE status = 'open' AND kind = ANY(:kinds)
    ORDER BY ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography), id
    LIMIT :k
""")


def main() -> None:
    parser = city_arguments(__doc__, points=100_000, blocks=120, repeat=5)
    parser.add_argument("--spots", type=int, default=30)
    args = parser.parse_args()
    engine, counts = bench_engine(blocks=args.blocks, points=args.points)
    rng = random.Random(1)
    now = datetime(2026, 7, 3, 12)
    with engine.connect() as conn:
        minx, miny, maxx, maxy = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM point) t")).one()
        spots = [(rng.uniform(minx, maxx), rng.uniform(miny, maxy)) for _ in range(args.spots)]
        kinds = ["kiosk", "toilet", "vendor_point"]

        def ours():
            return [[f["id"] for f in nearest_points(conn, NearestQuery(lon=x, lat=y, kinds=(kinds[i % 3],), k=5),
                                                     now=now, metric_crs=BENCH_METRIC_CRS)["features"]]
                    for i, (x, y) in enumerate(spots)]

        def baseline():
            return [conn.execute(BASELINE, {"lon": x, "lat": y, "kinds": [kinds[i % 3]], "k": 5}).scalars().all()
                    for i, (x, y) in enumerate(spots)]

        assert ours() == baseline(), "the two methods disagree"
        ours_ms = median_ms(ours, repeat=args.repeat) / len(spots)
        base_ms = median_ms(baseline, repeat=args.repeat) / len(spots)
    body = (
        f"Machine: {machine()}.\n\n"
        f"City: {counts['point']:,} points, {counts['street']:,} street segments (generated, "
        f"`scaled_spec(blocks={args.blocks}, points={args.points})`). {len(spots)} random spots, k = 5, one kind "
        f"per spot; median of {args.repeat} runs over all spots, per query. Both methods return identical ids.\n\n"
        "| method | median per query | ratio |\n|---|---|---|\n"
        f"| baseline: ORDER BY ST_Distance(geography) LIMIT k (full scan) | {base_ms:.2f} ms | 1.0 |\n"
        "| geoservice `nearest_points` (KNN on GiST for a bound, then exact spheroidal ranking within it; "
        "includes grid/squad lookup and links) | "
        f"{ours_ms:.2f} ms | {base_ms / ours_ms:.1f}× faster |\n\n"
        f"Reproduce: `.venv/bin/python -m bench.bench_nearest --points {args.points} --blocks {args.blocks}`.\n"
    )
    write_section("Nearest point (straight)", body)
    print(body)


if __name__ == "__main__":
    main()
