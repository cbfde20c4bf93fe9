"""Uncovered streets (straight): geoservice's query in PostGIS against the desktop-GIS recipe in geopandas.

Baseline: what a planner does by hand in QGIS or geopandas — read the streets and the qualifying points, project
them to the metric CRS, buffer every point by the radius, and take the overlay difference of the streets with the
buffers (``geopandas.overlay``, which finds the buffers touching each street with a spatial index; subtracting one
dissolved coverage polygon from every street instead is far slower). Timed from the database read to the
uncovered lengths. geoservice: ``uncovered_streets``,
which finds the covered stretches of each street exactly from the segment–circle intersections in one SQL
statement. The bench checks that both give the same uncovered length (within 0.1 %; buffers are polygons with
32 segments per quarter circle, a little inside the true circles).

Run: ``.venv/bin/python -m bench.bench_coverage [--points 100000] [--blocks 120]``. Results go to
docs/benchmarks.md.
"""

from __future__ import annotations

import time
from functools import partial

import geopandas as gpd

from bench.common import BENCH_METRIC_CRS, bench_engine, city_arguments, machine, median_ms, write_section
from geoservice import coverage, query

uncovered_streets = partial(coverage.uncovered_streets, metric_crs=BENCH_METRIC_CRS)
CASES = (  # (label, kinds, radius in metres)
    ("toilets, 300 m", ("toilet",), 300.0),
    ("kiosks, 200 m", ("kiosk",), 200.0),
    ("every kind, 100 m", (), 100.0),
)


def uncovered_m_by_geopandas(engine, *, kinds: tuple[str, ...], radius: float) -> float:
    """Total uncovered street length, the desktop-GIS way."""
    kinds = kinds or query.check_kinds(None)
    with engine.connect() as conn:
        streets = gpd.read_postgis("SELECT id, geom FROM street", conn, geom_col="geom")
        points = gpd.read_postgis("SELECT id, geom FROM point WHERE status = 'open' AND kind = ANY(%(kinds)s)",
                                  conn, geom_col="geom", params={"kinds": list(kinds)})
    streets = streets.to_crs(BENCH_METRIC_CRS)
    points = points.to_crs(BENCH_METRIC_CRS)
    circles = gpd.GeoDataFrame(geometry=points.buffer(radius, quad_segs=32), crs=points.crs)
    return float(gpd.overlay(streets, circles, how="difference", keep_geom_type=True).length.sum())


def main() -> None:
    parser = city_arguments(__doc__, points=100_000, blocks=120, repeat=3)
    args = parser.parse_args()
    engine, counts = bench_engine(blocks=args.blocks, points=args.points)
    rows = []
    for label, kinds, radius in CASES:
        with engine.connect() as conn:
            ours = uncovered_streets(conn, kinds=kinds, radius_m=radius)["summary"]
            ours_ms = median_ms(lambda: uncovered_streets(conn, kinds=kinds, radius_m=radius),  # noqa: B023
                                repeat=args.repeat)
        started = time.perf_counter()
        theirs_m = uncovered_m_by_geopandas(engine, kinds=kinds, radius=radius)
        print(f"{label}: geopandas first run {time.perf_counter() - started:.1f} s")
        theirs_ms = median_ms(lambda: uncovered_m_by_geopandas(engine, kinds=kinds, radius=radius),  # noqa: B023
                              repeat=args.repeat)
        ours_m = ours["uncovered_km"] * 1000
        assert abs(ours_m - theirs_m) <= 1e-3 * ours["total_km"] * 1000, (label, ours_m, theirs_m)
        rows.append(f"| {label} | {ours['uncovered_km']:,.1f} km of {ours['total_km']:,.1f} | "
                    f"{theirs_m / 1000:,.1f} km | {theirs_ms / 1000:.2f} s | {ours_ms / 1000:.2f} s | "
                    f"{theirs_ms / ours_ms:.1f}× |")
        print(rows[-1])
    body = (
        f"Machine: {machine()}.\n\n"
        f"City: {counts['street']:,} street segments, {counts['point']:,} points (generated, "
        f"`scaled_spec(blocks={args.blocks}, points={args.points})`). Uncovered street length over the whole city, "
        f"straight mode; median of {args.repeat} runs after a warm-up. Baseline: geopandas reads streets and points "
        "from PostGIS, projects them, buffers every point and takes the overlay difference of streets and buffers "
        "(the QGIS recipe); geoservice: `coverage.uncovered_streets`, which also returns the uncovered portions "
        "and the per-street ranking. The two uncovered lengths agree within 0.1 %.\n\n"
        "| points counted, radius | geoservice uncovered | geopandas uncovered | geopandas | geoservice | "
        "ratio |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Reproduce: `.venv/bin/python -m bench.bench_coverage --points {args.points} --blocks {args.blocks}`.\n"
    )
    write_section("Uncovered streets (straight)", body)
    print(body)


if __name__ == "__main__":
    main()
