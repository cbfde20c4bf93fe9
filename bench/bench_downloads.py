"""Coverage downloads: what f=csv|geojson|gpkg costs on top of the inline JSON answer, side by side.

The query is the same for every format, so it is timed once and the serialisations are timed on its result.
Baseline: ``json.dumps`` of the result, what the inline answer (f=json) costs. The downloads are
``geoservice.downloads`` (csv module, json, pyogrio into a GeoPackage). On a generated city.

Run: ``.venv/bin/python -m bench.bench_downloads [--blocks 60] [--points 3000]``. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import json

from bench.common import BENCH_METRIC_CRS, bench_engine, city_arguments, machine, median_ms, write_section
from geoservice import coverage, downloads

RADIUS_M = 200.0


def _rows(title: str, inline, files: dict, repeat: int) -> list[str]:
    rows = []
    baseline = median_ms(inline, repeat=repeat)
    size = len(inline())
    rows.append(f"| {title} | baseline: inline JSON (`json.dumps`) | {baseline:.1f} ms | {size / 1e6:.2f} MB | 1.0 |")
    for fmt, func in files.items():
        ms = median_ms(func, repeat=repeat)
        rows.append(f"| {title} | f={fmt} | {ms:.1f} ms | {len(func().body) / 1e6:.2f} MB | {ms / baseline:.1f}× |")
    return rows


def main() -> None:
    parser = city_arguments(__doc__, points=3_000, blocks=60, repeat=5)
    args = parser.parse_args()
    engine, counts = bench_engine(blocks=args.blocks, points=args.points, name="geoservice_bench_downloads")
    with engine.connect() as conn:
        city = {"radius_m": RADIUS_M, "metric_crs": BENCH_METRIC_CRS}
        query_ms = {"streets": median_ms(lambda: coverage.uncovered_streets(conn, **city), repeat=1),
                    "grids": median_ms(lambda: coverage.grid_coverage(conn, **city), repeat=1)}
        streets = coverage.uncovered_streets(conn, radius_m=RADIUS_M, metric_crs=BENCH_METRIC_CRS)
        grids = coverage.grid_coverage(conn, radius_m=RADIUS_M, metric_crs=BENCH_METRIC_CRS)
        rows = _rows("uncovered streets", lambda: json.dumps(streets, ensure_ascii=False).encode(), {
            fmt: (lambda fmt=fmt: downloads.uncovered_streets_file(streets, fmt=fmt))
            for fmt in downloads.DOWNLOAD_FORMATS}, args.repeat)
        rows += _rows("grid coverage", lambda: json.dumps({"grids": grids}, ensure_ascii=False).encode(), {
            fmt: (lambda fmt=fmt: downloads.grid_coverage_file(conn, grids, kinds=None, radius_m=RADIUS_M,
                                                               mode="straight", fmt=fmt))
            for fmt in downloads.DOWNLOAD_FORMATS}, args.repeat)
    for row in rows:
        print(row)
    body = (f"Machine: {machine()}.\n\n"
            f"City: {counts['street']:,} street segments, {counts['point']:,} points, {counts['grid']:,} grids "
            f"(generated, `scaled_spec(blocks={args.blocks}, points={args.points})`), radius {RADIUS_M:g} m, all "
            f"kinds, straight: {len(streets['features']):,} uncovered portions. The query itself (same for every "
            f"format): {query_ms['streets']:.0f} ms for the streets, {query_ms['grids']:.0f} ms for the grids. "
            f"Serialisation of its result, median of {args.repeat} runs (grid files include reading the grid "
            "outlines):\n\n"
            "| result | answer | median | size | ratio |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"Reproduce: `.venv/bin/python -m bench.bench_downloads --blocks {args.blocks} --points {args.points}`.\n")
    write_section("Coverage downloads", body)


if __name__ == "__main__":
    main()
