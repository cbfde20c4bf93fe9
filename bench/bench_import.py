"""Importing a million points from a GeoPackage: geoservice's importer against a plain baseline, side by side.

Baseline: what a loader typically does — read the file with geopandas and INSERT the rows with SQLAlchemy
``executemany`` (the way ``geoservice.demo`` loads the small demo city), no validation. geoservice:
``import_file(..., replace=True)`` — read with pyogrio, validate every row (geometry, vocabularies, phones, hours,
duplicates, city extent), then COPY hex EWKB into the table with its secondary indexes rebuilt afterwards, all in
one transaction. Both start from an empty point table and are timed from opening the file to the commit.

The points come from the city generator (``scaled_spec``), written once to ``var/bench/points_<n>.gpkg``.

Run: ``.venv/bin/python -m bench.bench_import [--points 1000000] [--repeat 3]``. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import geopandas as gpd
import pyogrio
import sqlalchemy as sa
from geoalchemy2.shape import from_shape

from bench.common import BENCH_METRIC_CRS, ROOT, bench_database, city_arguments, machine, write_section
from geoservice import models
from geoservice.citygen import CitySpec, generate_city, scaled_spec
from geoservice.ingest import ImportOptions, import_file

COLUMNS = ("name", "kind", "amenities", "address", "phone", "opening_hours", "season", "capacity", "occupancy",
           "status")


def points_file(points: int, blocks: int) -> Path:
    """The generated city's points as a GeoPackage (made once, then reused)."""
    path = ROOT / "var" / "bench" / f"points_{points}.gpkg"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    city = generate_city(scaled_spec(blocks=blocks, points=points))
    frame = gpd.GeoDataFrame({c: [p.get(c) for p in city.points] for c in COLUMNS},
                             geometry=[p["geom"] for p in city.points], crs=4326)
    frame["amenities"] = [";".join(a) for a in frame["amenities"]]
    for column in ("capacity", "occupancy"):
        frame[column] = frame[column].astype("Int64")
    pyogrio.write_dataframe(frame, path, layer="points", driver="GPKG")
    print(f"wrote {len(frame):,} points to {path} in {time.perf_counter() - started:.0f} s")
    return path


def empty_points(engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE point RESTART IDENTITY"))


def ours(engine, path: Path) -> tuple[float, int]:
    empty_points(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        result = import_file(conn, "points", path, options=ImportOptions(replace=True, city_center=CitySpec().center,
                                                                         radius_km=60, metric_crs=BENCH_METRIC_CRS))
    return time.perf_counter() - started, result.written


def baseline(engine, path: Path) -> tuple[float, int]:
    empty_points(engine)
    started = time.perf_counter()
    frame = gpd.read_file(path, layer="points")
    rows = []
    table = frame[list(COLUMNS)].astype(object)
    table = table.where(table.notna(), None)  # NaN → NULL
    for record, geom in zip(table.to_dict("records"), frame.geometry, strict=True):
        record["amenities"] = record["amenities"].split(";") if record["amenities"] else []
        for column in ("capacity", "occupancy"):
            record[column] = int(record[column]) if record[column] is not None else None
        rows.append({**record, "geom": from_shape(geom, srid=4326)})
    with engine.begin() as conn:
        conn.execute(sa.insert(models.Point.__table__), rows)
    return time.perf_counter() - started, len(rows)


def fingerprint(engine) -> tuple:
    """Count and coordinate sums: both methods must load the same points."""
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(
            "SELECT count(*), round(sum(ST_X(geom))::numeric, 6), round(sum(ST_Y(geom))::numeric, 6), "
            "count(DISTINCT name), sum(cardinality(amenities)) FROM point")).one())


def median_run(method, engine, path: Path, repeat: int) -> tuple[float, int, tuple]:
    times, count = [], 0
    for _ in range(repeat):
        seconds, count = method(engine, path)
        times.append(seconds)
        print(f"  {method.__name__}: {seconds:.1f} s")
    return statistics.median(times), count, fingerprint(engine)


def main() -> None:
    parser = city_arguments(__doc__, points=1_000_000, blocks=120, repeat=3)
    args = parser.parse_args()
    path = points_file(args.points, args.blocks)
    engine = bench_database("geoservice_bench_import")
    ours_s, ours_n, ours_print = median_run(ours, engine, path, args.repeat)
    base_s, base_n, base_print = median_run(baseline, engine, path, args.repeat)
    empty_points(engine)
    assert ours_print == base_print and ours_n == base_n, (ours_print, base_print)
    body = (
        f"Machine: {machine()}.\n\n"
        f"{ours_n:,} points (generated, `scaled_spec(blocks={args.blocks}, points={args.points})`) in one "
        f"GeoPackage ({path.stat().st_size / 2**20:.0f} MiB), imported into an empty point table; from opening the "
        f"file to the commit, median of {args.repeat} runs. Both methods load identical rows (count, coordinate "
        "sums, names and amenities checked).\n\n"
        "| method | median time | points/s | ratio |\n|---|---|---|---|\n"
        f"| baseline: geopandas read + SQLAlchemy executemany INSERT (no validation) | {base_s:.1f} s | "
        f"{base_n / base_s:,.0f} | 1.0 |\n"
        f"| geoservice `import_file` (pyogrio Arrow read, per-row validation, in 50,000-row batches overlapping a "
        f"COPY of hex EWKB; indexes rebuilt; one transaction) | {ours_s:.1f} s | {ours_n / ours_s:,.0f} | "
        f"{base_s / ours_s:.1f}× faster |\n\n"
        f"Target: ≥ 50,000 points/s. Reproduce: `.venv/bin/python -m bench.bench_import --points {args.points}`.\n"
    )
    write_section("Import points from GeoPackage", body)
    print(body)


if __name__ == "__main__":
    main()
