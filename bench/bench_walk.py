"""Walking routes: geoservice's per-request graph (streets within the walking limit) against the whole-graph query.

pgRouting builds its graph from the edges SQL on every call, so the cost of a query grows with the edges handed
to it. Baseline: the same pgr_withPoints query over every street of the city — what a query written straight from
the pgRouting documentation does. geoservice: only the streets within the walking limit of the spot (a walk of
length d never leaves the disc of radius d, so the answer is the same). Both are given the same snapped spot and
targets; the bench checks the distances agree.

Run: ``.venv/bin/python -m bench.bench_walk [--points 100000] [--blocks 120]``. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import random
from datetime import datetime

import sqlalchemy as sa

from bench.common import BENCH_METRIC_CRS, bench_engine, city_arguments, machine, median_ms, write_section
from geoservice import routing, spatial
from geoservice.nearest import NearestQuery, nearest_points

NEAREST_CANDIDATES = sa.text("""
    SELECT id, ST_X(geom), ST_Y(geom) FROM point WHERE status = 'open'
    ORDER BY geom::geography <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography LIMIT :n
""")
WHOLE_CITY = (-180.0, -90.0, 180.0, 90.0)


def routes_over(conn, spot: tuple[float, float], targets, *, bbox, limit: float) -> dict[int, float]:
    """Network distances from the snapped spot to the snapped targets, with the graph cut to ``bbox``."""
    srid = spatial.metric_srid(conn, BENCH_METRIC_CRS)
    start = routing.snap_points(conn, [(0, *spot)], srid=srid)[0]
    snapped = routing.snap_points(conn, targets, srid=srid)
    reachable = list(enumerate(snapped.values(), start=2))
    routes = routing._network_routes(conn, start, reachable, bbox=bbox, srid=srid, limit=limit)  # noqa: SLF001
    keys = {pid: snap.key for pid, snap in reachable}
    return {keys[pid]: route.distance_m for pid, route in routes.items()}


def main() -> None:
    parser = city_arguments(__doc__, points=100_000, blocks=120, repeat=3)
    parser.add_argument("--spots", type=int, default=20)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--limit", type=float, default=1500.0)
    args = parser.parse_args()
    engine, counts = bench_engine(blocks=args.blocks, points=args.points)
    rng = random.Random(2)
    with engine.connect() as conn:
        minx, miny, maxx, maxy = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM street) t"
        )).one()
        spots = [(rng.uniform(minx, maxx), rng.uniform(miny, maxy)) for _ in range(args.spots)]
        targets = {s: [tuple(r) for r in conn.execute(NEAREST_CANDIDATES, {"lon": s[0], "lat": s[1],
                                                                            "n": args.targets})] for s in spots}

        def small():
            return [routes_over(conn, s, targets[s], bbox=spatial.box_around(*s, args.limit + 300), limit=args.limit)
                    for s in spots]

        def whole():
            return [routes_over(conn, s, targets[s], bbox=WHOLE_CITY, limit=args.limit) for s in spots]

        for ours, theirs in zip(small(), whole(), strict=True):
            assert ours.keys() == theirs.keys(), "the two graphs reach different targets"
            assert all(abs(ours[k] - theirs[k]) < 1e-6 for k in ours), "the two graphs disagree"
        small_ms = median_ms(small, repeat=args.repeat) / len(spots)
        whole_ms = median_ms(whole, repeat=args.repeat) / len(spots)
        now = datetime(2026, 7, 3, 12)
        api_ms = median_ms(lambda: [nearest_points(conn, NearestQuery(lon=x, lat=y, k=5, mode="walk"), now=now,
                                                   metric_crs=BENCH_METRIC_CRS)
                                    for x, y in spots], repeat=args.repeat) / len(spots)
    body = (
        f"Machine: {machine()}.\n\n"
        f"City: {counts['street']:,} street segments, {counts['point']:,} points (generated, "
        f"`scaled_spec(blocks={args.blocks}, points={args.points})`). {len(spots)} random spots, each routed to its "
        f"{args.targets} nearest points with a {args.limit:.0f} m walking limit; median of {args.repeat} runs, per "
        "spot. Both graphs give identical distances.\n\n"
        "| method | median per spot | ratio |\n|---|---|---|\n"
        f"| baseline: pgr_withPoints over the whole street table | {whole_ms:.1f} ms | 1.0 |\n"
        f"| geoservice: pgr_withPoints over the streets within the limit | {small_ms:.1f} ms | "
        f"{whole_ms / small_ms:.1f}× faster |\n\n"
        f"End to end, `nearest_points(mode='walk', k=5)` (exact search, routes, grid, links): {api_ms:.1f} ms median "
        "per query.\n\n"
        f"Reproduce: `.venv/bin/python -m bench.bench_walk --points {args.points} --blocks {args.blocks}`.\n"
    )
    write_section("Walking routes", body)
    print(body)


if __name__ == "__main__":
    main()
