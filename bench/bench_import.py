"""Importing points from a GeoPackage: geoservice's importer against GDAL's ogr2ogr (and geopandas), side by side.

Methods, each timed from opening the file to the commit, median of ``--repeat`` runs, at each of ``--sizes``:

- geoservice: ``import_file(..., replace=True)`` into an empty point table — read with pyogrio, validate every row
  (geometry, vocabularies, phones, hours, duplicates, city extent), COPY hex EWKB into a table built aside with the
  point table's CHECK constraints, build its key and its four indexes (geometry GiST, geography GiST for the
  nearest-point KNN, kind, amenities GIN), analyse it and swap it in.
- ogr2ogr: ``ogr2ogr -f PostgreSQL --config PG_USE_COPY YES`` into a scratch table of the same database
  (``bench_ogr2ogr_points``, made anew each run) with its geometry GiST index (``-lco SPATIAL_INDEX=GIST``): no
  validation, no constraints, one index.
- geopandas (sizes up to ``--geopandas-up-to``): read with geopandas and INSERT the rows with SQLAlchemy
  ``executemany`` (the way ``geoservice.demo`` loads the small demo city), no validation.

Readers during an import: one more geoservice import per size replaces the full point table while another
connection calls ``nearest_points`` every 100 ms; the bench reports the slowest call against the idle median.

Per stage (``--stages``): where geoservice's time goes — Python CPU of reading, validating and serialising (the
COPY overlaps them) and the database backend's CPU of the COPY, of each index and of the swap.

The points come from the city generator (``scaled_spec``), written once to ``var/bench/points_<n>.gpkg``.

Run: ``.venv/bin/python -m bench.bench_import [--sizes 100000 1000000] [--repeat 3] [--stages]``. Results go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pyogrio
import sqlalchemy as sa
from geoalchemy2.shape import from_shape

from bench.common import BENCH_METRIC_CRS, ROOT, bench_database, machine, write_section
from geoservice import models
from geoservice.citygen import CitySpec, generate_city, scaled_spec
from geoservice.ingest import ImportOptions, import_file
from geoservice.nearest import NearestQuery, nearest_points

COLUMNS = ("name", "kind", "amenities", "address", "phone", "opening_hours", "season", "capacity", "occupancy",
           "status")
OGR_TABLE = "bench_ogr2ogr_points"
BLOCKS = 120


def points_file(points: int, blocks: int = BLOCKS) -> Path:
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


def _options() -> ImportOptions:
    return ImportOptions(replace=True, city_center=CitySpec().center, radius_km=60, metric_crs=BENCH_METRIC_CRS)


def ours(engine, path: Path) -> tuple[float, int]:
    empty_points(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        result = import_file(conn, "points", path, options=_options())
    return time.perf_counter() - started, result.written


def ogr2ogr(engine, path: Path) -> tuple[float, int]:
    url = engine.url
    target = f"PG:host={url.host} port={url.port} dbname={url.database} user={url.username}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {OGR_TABLE}"))
    started = time.perf_counter()
    subprocess.run(["ogr2ogr", "-f", "PostgreSQL", target, str(path), "points", "-nln", OGR_TABLE,
                    "-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=GIST", "--config", "PG_USE_COPY", "YES"],
                   check=True, capture_output=True, env={**os.environ, "PGPASSWORD": url.password or ""})
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        return seconds, conn.execute(sa.text(f"SELECT count(*) FROM {OGR_TABLE}")).scalar_one()


def geopandas(engine, path: Path) -> tuple[float, int]:
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


FINGERPRINT = ("SELECT count(*), round(sum(ST_X(geom))::numeric, 6), round(sum(ST_Y(geom))::numeric, 6), "
               "count(DISTINCT name), sum(cardinality(amenities)) FROM {table}")


def fingerprint(engine, table: str = "point") -> tuple:
    """Count and coordinate sums: the methods must load the same points (ogr2ogr keeps amenities as text)."""
    query = FINGERPRINT if table == "point" else FINGERPRINT.replace("cardinality(amenities)",
                                                                     "cardinality(string_to_array(amenities, ';'))")
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(query.format(table=table))).one())


def median_run(method, engine, path: Path, repeat: int) -> tuple[float, int, list[float]]:
    times, count = [], 0
    for _ in range(repeat):
        seconds, count = method(engine, path)
        times.append(seconds)
        print(f"  {method.__name__} {path.name}: {seconds:.1f} s", flush=True)
    return statistics.median(times), count, times


# -- readers during an import --------------------------------------------------------------------------------

class NearestProbe:
    """Asks ``nearest_points`` every ``every_s`` on a connection of its own, each call its own transaction.

    ``calls`` records (start, seconds) of each call, ``answers`` the ids it returned, ``errors`` any exception
    (a reader must never fail).
    """

    def __init__(self, engine, *, lon: float, lat: float, metric_crs: str = BENCH_METRIC_CRS,
                 every_s: float = 0.1) -> None:
        self.engine, self.metric_crs, self.every_s = engine, metric_crs, every_s
        self.query = NearestQuery(lon=lon, lat=lat, k=5)
        self.calls: list[tuple[float, float]] = []
        self.answers: list[tuple[int, ...]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    found = nearest_points(conn, self.query, now=datetime(2026, 7, 3, 12), metric_crs=self.metric_crs)
                    self.answers.append(tuple(f["id"] for f in found["features"]))
                except Exception as exc:  # noqa: BLE001 (recorded: a reader must never fail)
                    self.errors.append(repr(exc))
                conn.rollback()
                took = time.perf_counter() - started
                self.calls.append((started, took))
                self._stop.wait(max(0.0, self.every_s - took))

    def __enter__(self) -> NearestProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def during(self, start: float, end: float) -> list[float]:
        """Durations of the calls that overlapped [start, end]."""
        return [took for began, took in self.calls if began <= end and began + took >= start]


def readers_during_import(engine, path: Path) -> dict:
    """Replace a full point table with ``path`` while nearest is asked every 100 ms."""
    with engine.connect() as conn:
        lon, lat = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point ORDER BY id LIMIT 1")).one()
    with NearestProbe(engine, lon=lon, lat=lat) as probe:
        time.sleep(2)
        idle = [took for _, took in probe.calls]
        started = time.perf_counter()
        with engine.begin() as conn:
            import_file(conn, "points", path, options=_options())
        ended = time.perf_counter()
        time.sleep(1)
    during = probe.during(started, ended)
    assert not probe.errors, probe.errors[:3]
    return {"idle_ms": statistics.median(idle) * 1000, "calls": len(during), "max_ms": max(during) * 1000,
            "median_ms": statistics.median(during) * 1000, "import_s": ended - started}


# -- where the time goes ---------------------------------------------------------------------------------------

def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _TimedCursor:
    """A cursor that records every statement taking over 50 ms: (statement, wall s, database backend CPU s)."""

    def __init__(self, cursor, pid: int, record: list) -> None:
        self._cursor, self._pid, self._record = cursor, pid, record

    def __getattr__(self, name: str):
        return getattr(self._cursor, name)

    def execute(self, sql, params=None):
        wall, db = time.perf_counter(), _backend_cpu(self._pid)
        try:
            return self._cursor.execute(sql, params)
        finally:
            took = time.perf_counter() - wall
            if took > 0.05:
                statement = " ".join(str(sql).split())
                self._record.append((statement[:70], took, 0.0, _backend_cpu(self._pid) - db))


def stages(engine, path: Path) -> list[tuple[str, float, float, float]]:
    """One import into an empty table with its steps timed: (step, wall s, Python CPU s, database backend CPU s).

    The backend's CPU comes from /proc (the embedded cluster runs on this machine); Python's counts every thread
    of this process (the COPY's producer thread reads, validates and serialises). The loader's cursor is wrapped
    to time each statement over 50 ms (the key, each index, ANALYZE, the swap's statements).
    """
    from geoservice.ingest import load

    empty_points(engine)
    record: list[tuple[str, float, float, float]] = []
    write_layer, copy = load._write_layer, load._copy
    with engine.begin() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()

        def timed_copy(*args, **kwargs):
            wall, cpu, db = time.perf_counter(), time.process_time(), _backend_cpu(pid)
            copy(*args, **kwargs)
            record.append(("COPY, overlapping reading, validating and serialising", time.perf_counter() - wall,
                           time.process_time() - cpu, _backend_cpu(pid) - db))

        load._write_layer = lambda cursor, *args, **kwargs: write_layer(_TimedCursor(cursor, pid, record), *args,
                                                                         **kwargs)
        load._copy = timed_copy
        try:
            wall, cpu, db = time.perf_counter(), time.process_time(), _backend_cpu(pid)
            import_file(conn, "points", path, options=_options())
            whole = ("the whole import_file", time.perf_counter() - wall, time.process_time() - cpu,
                     _backend_cpu(pid) - db)
        finally:
            load._write_layer, load._copy = write_layer, copy
        committed = time.perf_counter()
    return [*record, whole, ("commit", time.perf_counter() - committed, 0.0, 0.0)]


# -- the report ----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="points per file")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--geopandas-up-to", type=int, default=100_000, metavar="N",
                        help="also time the geopandas + executemany loader on files of up to N points")
    parser.add_argument("--stages", action="store_true", help="also time geoservice's steps (largest size)")
    args = parser.parse_args()
    engine = bench_database("geoservice_bench_import")
    rows, readers = [], []
    for size in args.sizes:
        path = points_file(size)
        ours_s, ours_n, ours_runs = median_run(ours, engine, path, args.repeat)
        ours_print = fingerprint(engine)
        ogr_s, ogr_n, ogr_runs = median_run(ogr2ogr, engine, path, args.repeat)
        assert ours_print[:3] == fingerprint(engine, OGR_TABLE)[:3] and ours_n == ogr_n == size
        rows.append((size, "geoservice `import_file` (validated, constraints, 4 indexes + key, swapped in)",
                     ours_s, ours_runs, ours_n))
        rows.append((size, "ogr2ogr `PG_USE_COPY YES` (no validation, 1 GiST index)", ogr_s, ogr_runs, ogr_n))
        if size <= args.geopandas_up_to:
            base_s, base_n, base_runs = median_run(geopandas, engine, path, args.repeat)
            assert fingerprint(engine) == ours_print and base_n == ours_n
            rows.append((size, "geopandas read + SQLAlchemy executemany INSERT (no validation)", base_s, base_runs,
                         base_n))
        readers.append((size, readers_during_import(engine, path)))
        print(rows[-3:], readers[-1], flush=True)
    profile = stages(engine, points_file(max(args.sizes))) if args.stages else []
    empty_points(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {OGR_TABLE}"))
    body = report(args, rows, readers, profile)
    write_section("Import points from GeoPackage", body)
    print(body)


def report(args, rows: list, readers: list, profile: list) -> str:
    ogr = {size: seconds for size, method, seconds, _, _ in rows if method.startswith("ogr2ogr")}
    table = "| points | method | median time | runs | points/s | vs ogr2ogr |\n|---|---|---|---|---|---|\n"
    for size, method, seconds, runs, count in rows:
        ratio = ogr[size] / seconds
        versus = "1.0" if method.startswith("ogr2ogr") else (f"{ratio:.2f}× the rate" if ratio < 1
                                                              else f"{ratio:.2f}× faster")
        table += (f"| {size:,} | {method} | {seconds:.1f} s | {', '.join(f'{t:.1f}' for t in runs)} | "
                  f"{count / seconds:,.0f} | {versus} |\n")
    waits = ("| points | nearest calls during the import | slowest | median | idle median | import |\n"
             "|---|---|---|---|---|---|\n")
    for size, r in readers:
        waits += (f"| {size:,} | {r['calls']} | {r['max_ms']:.0f} ms | {r['median_ms']:.0f} ms | "
                  f"{r['idle_ms']:.0f} ms | {r['import_s']:.1f} s |\n")
    body = (
        f"Machine: {machine()}.\n\n"
        f"Points generated by `scaled_spec(blocks={BLOCKS}, points=N)`, one GeoPackage per size; from opening the "
        f"file to the commit, median of {args.repeat} runs (each run listed). geoservice replaces an empty point "
        "table, ogr2ogr creates its own table; both load the same points (count and coordinate sums checked).\n\n"
        + table +
        "\nA reader during a geoservice import that replaces the full point table: `nearest_points` every 100 ms "
        "on its own connection (each call its own transaction). Before the staging table and the swap, the import "
        "held the point table's lock for the whole load and a reader waited that long (25 s at 1M points, "
        "issue 14).\n\n" + waits
    )
    if profile:
        body += _target(rows, profile)
        body += ("\nWhere geoservice's time goes (one run at the largest size; CPU of this Python process and of "
                 "the database backend, from /proc):\n\n"
                 "| step | wall | Python CPU | database CPU |\n|---|---|---|---|\n")
        for label, wall, cpu, db in profile:
            body += f"| {label} | {wall:.2f} s | {cpu:.2f} s | {db:.2f} s |\n"
    sizes = " ".join(str(s) for s in args.sizes)
    body += (f"\nReproduce: `.venv/bin/python -m bench.bench_import --sizes {sizes} --repeat {args.repeat} "
             f"--geopandas-up-to {args.geopandas_up_to}{' --stages' if args.stages else ''}`.\n")
    return body


def _target(rows: list, profile: list) -> str:
    """Issue 14's target (at least ogr2ogr's rate) at the largest size, and what stands between."""
    size = max(size for size, *_ in rows)
    ours_s = next(s for n, method, s, *_ in rows if n == size and method.startswith("geoservice"))
    ogr_s = next(s for n, method, s, *_ in rows if n == size and method.startswith("ogr2ogr"))
    steps = {label.split(" ON ")[0].removeprefix("CREATE INDEX "): db for label, _, _, db in profile}
    geography = steps.get("point_geog_idx", 0.0)
    copy_wall, copy_python = next((wall, cpu) for label, wall, cpu, _ in profile if label.startswith("COPY"))
    return (
        f"\nTarget (issue 14): at least ogr2ogr's rate. {'Met' if ours_s <= ogr_s else 'Missed'} at {size:,} "
        f"points: {ours_s:.1f} s against {ogr_s:.1f} s, {ogr_s / ours_s:.2f}× ogr2ogr's rate. The profile below "
        f"says why: the geography GiST index alone takes {geography:.1f} s of the database's CPU. The nearest-point "
        "KNN (`ORDER BY geom::geography <-> spot`) needs it, and PostGIS 3.3's geography operator class has no "
        "sort support, so its build inserts entry by entry (the geometry GiST sorts: a fraction of that; building "
        "it with `buffering=on` saves about 10 %, growing it during the COPY costs 1.5-2× more). Reading and "
        f"validating every row costs {copy_python:.1f} s of Python CPU, which the COPY overlaps ({copy_wall:.1f} s "
        "wall); ogr2ogr validates nothing, checks no constraint and builds one index. Left to gain: the five "
        "index builds run one after another in the import's backend; built in parallel sessions (which needs "
        "the staging table committed before the swap) they would take about as long as the geography index.\n")


if __name__ == "__main__":
    main()
