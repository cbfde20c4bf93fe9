"""Uncovered streets (straight) on the coverage engine, against the naive ST_Union query and the previous SQL code.

Three city sizes (about 10,000, 100,000 and 300,000 street segments) with 10,000 and 100,000 convenience points,
radius 150 and 500 m, every kind, straight mode, all on the same tables in one run:

- **engine**: ``geoservice.coverage.uncovered_streets`` on the in-memory engine. The load (``engine_for`` on a
  freshly forgotten engine) and the first answer are reported apart; then the median of warm calls (the same kind
  set at the same radius: the engine keeps per kind set only what does not depend on the radius, so a warm call
  costs what a new radius costs);
- **naive**: the recipe a planner types into psql — per street, ``ST_Union`` of the 8-segment buffers
  (``quad_segs=2``) of the qualifying points near it (found with the geography index), ``ST_Difference`` of the
  street with it, metric lengths summed. Approximate (octagons inside the circles), timed as typed;
- **previous**: ``bench/previous_coverage.py``, the SQL implementation from before the engine.

Exactness: the engine's uncovered length is compared with an independent computation in shapely. Streets and points
are read with geopandas, projected with pyproj (geopandas ``to_crs``) to the metric CRS, and every street is cut by
point buffers with ``quad_segs`` = 256 (1024-gons), one buffer at a time (vectorised across streets). A polygon whose
vertices lie on the circle is inside the disc and one scaled by 1/cos(π/1024) contains it, so the two runs bracket
the exact uncovered length; the bench reports the bracket (it must be far below 0.01 %) and the engine's distance
from its middle. The uncovered pieces are measured on the spheroid (``pyproj.Geod`` between consecutive vertices,
after projecting back to WGS 84), as the service measures them. A street is taken as wholly covered, without a
polygon, when all its vertices lie within the polygon's inradius of one point (a disc is convex).

The 10,000-point city is the 100,000-point one with only its first 10,000 points: the generator draws points in
order, so they are exactly the points of ``scaled_spec(blocks, points=10000)``. The other 90,000 are set aside in a
table of the bench database for the 10,000-point cases and put back afterwards.

Also: slider times on the 100,000-point city of the other benches (``scaled_spec(blocks=120, points=100000)``,
29,078 segments) — a new radius, a new kind set, uncovered streets and grid coverage, and walking coverage; the
exponent of the engine's time against the number of segments (least squares on log–log); the engine's memory at the
largest size (the peak and retained allocations traced by tracemalloc over a load and answers).

Generating the 300,000-segment city takes about 20 minutes (``citygen``'s snapping of shared grid boundaries grows
with the square of the grids), so each city is kept in a database of the bench's own
(``geoservice_bench_engine_<blocks>_<points>``, marked with its spec) and reused while it holds that spec's points;
``--reload`` generates them again.

Run: ``.venv/bin/python -m bench.bench_coverage_engine [--sizes 10k,100k,300k] [--repeat 5]``. Results go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial

import geopandas as gpd
import numpy as np
import shapely
import sqlalchemy as sa
from psycopg2.errors import QueryCanceled
from pyproj import Geod, Transformer

from bench import previous_coverage
from bench.common import BENCH_METRIC_CRS, bench_database, bench_engine, machine, median_ms, write_section
from geoservice import coverage, query
from geoservice.coverage_engine import engine_for, forget_engines
from geoservice.demo import row_counts

SIZES = {"10k": 70, "100k": 223, "300k": 386}
"""Street segments → ``blocks`` of ``scaled_spec``: 10,022, 100,105 and 299,613 segments."""
POINTS = (100_000, 10_000)
RADII = (150.0, 500.0)
ALL_KINDS = query.check_kinds(None)
SLIDER_BLOCKS = 120
SLIDER_RADII = (150.0, 200.0, 300.0, 500.0, 800.0)
SLIDER_KINDS = (("kiosk",), ("toilet",), ("vendor_point", "melon_point"), ("rest_station", "kiosk", "toilet"),
                ("parking", "night_market", "job_board"))
WALK_RADII = (300.0, 500.0, 800.0)
QUAD_SEGS = 256
SLOW_MS = 15_000.0
"""A baseline whose first run takes longer than this is timed by that run alone, to keep the whole run short."""

_GEOD = Geod(ellps="WGS84")
uncovered_streets = partial(coverage.uncovered_streets, metric_crs=BENCH_METRIC_CRS)
grid_coverage = partial(coverage.grid_coverage, metric_crs=BENCH_METRIC_CRS)

# The naive recipe, written as a planner would type it into psql: the points near each street by the geography
# index, their octagons unioned, the street minus the union, metric lengths summed.
NAIVE_SQL = sa.text("""
    SELECT sum(CASE WHEN c.g IS NULL THEN ST_Length(s.gm) ELSE ST_Length(ST_Difference(s.gm, c.g)) END) AS uncovered_m,
           sum(ST_Length(s.gm)) AS total_m
    FROM (SELECT geom, ST_Transform(geom, :srid) AS gm FROM street) AS s
    CROSS JOIN LATERAL (
        SELECT ST_Union(ST_Buffer(ST_Transform(p.geom, :srid), :radius, 'quad_segs=2')) AS g
        FROM point p
        WHERE p.status = 'open' AND p.kind = ANY(:kinds)
          AND ST_DWithin(p.geom::geography, s.geom::geography, :radius)
    ) AS c
""")


@dataclass
class Timing:
    """A first call (its answer kept) and the median of the timed calls after it, in milliseconds.

    ``runs`` = 0: the first call hit the time limit (``median_ms`` is the limit, ``answer`` None).
    """

    answer: object
    first_ms: float
    median_ms: float
    runs: int


def timed(func: Callable[[], object], *, repeat: int) -> Timing:
    """Time a first call (it also warms the caches), then ``repeat`` more — none when the first was slow."""
    started = time.perf_counter()
    try:
        answer = func()
    except sa.exc.OperationalError as error:
        if not isinstance(error.orig, QueryCanceled):
            raise
        first = (time.perf_counter() - started) * 1000
        return Timing(None, first, first, 0)
    first = (time.perf_counter() - started) * 1000
    if first >= SLOW_MS:  # minutes per run: the first is the measurement (caches matter little at that length)
        return Timing(answer, first, first, 1)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append((time.perf_counter() - started) * 1000)
    return Timing(answer, first, statistics.median(times), repeat)


# -- cities ------------------------------------------------------------------------------------------------

def bench_city(*, blocks: int, points: int, reload: bool):
    """An engine on the bench's database of this city, generated and loaded unless it already holds it.

    Returns (engine, row counts, seconds spent generating and loading or None when reused).
    """
    name = f"geoservice_bench_engine_{blocks}_{points}"
    spec = f"scaled_spec(blocks={blocks}, points={points})"
    engine = bench_database(name)
    with engine.connect() as conn:
        marked = conn.execute(sa.text("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                      "WHERE datname = current_database()")).scalar()
        counts = row_counts(conn)
    if not reload and marked == spec and counts["point"] == points:
        print(f"{spec}: reusing {name} ({counts['street']:,} segments)")
        return engine, counts, None
    started = time.perf_counter()
    engine, counts = bench_engine(blocks=blocks, points=points, name=name)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"COMMENT ON DATABASE {name} IS '{spec}'")
    return engine, counts, time.perf_counter() - started


def _vacuum_points(db) -> None:
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE point")


@contextmanager
def first_points_only(db, keep: int) -> Iterator[None]:
    """The city with only its first ``keep`` points; the others are put back afterwards."""
    with db.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_points_set_aside")
        conn.execute(sa.text("CREATE TABLE bench_points_set_aside AS SELECT * FROM point WHERE id > :keep"),
                     {"keep": keep})
        conn.execute(sa.text("DELETE FROM point WHERE id > :keep"), {"keep": keep})
    _vacuum_points(db)
    try:
        yield
    finally:
        with db.begin() as conn:
            conn.exec_driver_sql("INSERT INTO point SELECT * FROM bench_points_set_aside")
            conn.exec_driver_sql("DROP TABLE bench_points_set_aside")
        _vacuum_points(db)


# -- the three ways ----------------------------------------------------------------------------------------

def limited(db, func: Callable, *, limit_s: float) -> Callable[[], object]:
    """``func(conn)`` in a transaction of its own that PostgreSQL cancels after ``limit_s`` seconds."""
    def call():
        with db.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {round(limit_s * 1000)}")
            return func(conn)
    return call


def naive_uncovered(conn, *, radius: float) -> tuple[float, float]:
    """(uncovered m, total m) by the naive query, metric lengths."""
    srid = int(BENCH_METRIC_CRS.split(":")[1])
    row = conn.execute(NAIVE_SQL, {"srid": srid, "radius": radius, "kinds": list(ALL_KINDS)}).one()
    return float(row.uncovered_m), float(row.total_m)


def previous_uncovered(conn, *, radius: float) -> dict:
    """The summary of the previous SQL implementation."""
    return previous_coverage.uncovered_streets(conn, radius_m=radius, kinds=ALL_KINDS,
                                               metric_crs=BENCH_METRIC_CRS)["summary"]


def engine_uncovered(conn, *, radius: float) -> dict:
    """The engine's summary."""
    return uncovered_streets(conn, radius_m=radius, kinds=ALL_KINDS)["summary"]


# -- the independent answer --------------------------------------------------------------------------------

def geodesic_m(lines: np.ndarray, to_wgs84: Transformer | None) -> float:
    """Total length on the spheroid of (multi)lines, in metres; ``to_wgs84`` projects metric coordinates back."""
    parts = shapely.get_parts(lines)
    xy, part = shapely.get_coordinates(parts, return_index=True)
    if len(xy) < 2:
        return 0.0
    lon, lat = to_wgs84.transform(xy[:, 0], xy[:, 1]) if to_wgs84 is not None else (xy[:, 0], xy[:, 1])
    same = part[1:] == part[:-1]
    _, _, dist = _GEOD.inv(lon[:-1][same], lat[:-1][same], lon[1:][same], lat[1:][same])
    return float(np.sum(dist))


def reference_uncovered(db, *, radius: float, kinds: tuple[str, ...] = ALL_KINDS) -> tuple[float, float, float]:
    """(lower bound, upper bound, total) of the uncovered street length on the spheroid, in metres, by shapely.

    Upper bound: every street minus the 1024-gons with vertices on the circles (inside the discs). Lower bound: minus
    1024-gons scaled by 1/cos(π/1024) (containing the discs).
    """
    with db.connect() as conn:
        streets = gpd.read_postgis("SELECT id, geom FROM street ORDER BY id", conn, geom_col="geom")
        points = gpd.read_postgis("SELECT geom FROM point WHERE status = 'open' AND kind = ANY(%(kinds)s)", conn,
                                  geom_col="geom", params={"kinds": list(kinds)})
    total = geodesic_m(streets.geometry.values.to_numpy(), None)
    lines = streets.to_crs(BENCH_METRIC_CRS).geometry.values.to_numpy()
    centres = points.to_crs(BENCH_METRIC_CRS).geometry.values.to_numpy()
    to_wgs84 = Transformer.from_crs(BENCH_METRIC_CRS, "EPSG:4326", always_xy=True)
    scale = 1 / math.cos(math.pi / (4 * QUAD_SEGS))
    # Which points can touch which street: within the larger polygons' circumradius.
    street_of, point_of = shapely.STRtree(centres).query(lines, predicate="dwithin", distance=radius * scale)
    # The discrete Hausdorff distance from a point to a line is the distance to its farthest vertex.
    farthest = shapely.hausdorff_distance(lines[street_of], centres[point_of])
    bounds = []
    for circumradius in (radius * scale, radius):
        inradius = circumradius / scale
        whole = np.zeros(len(lines), bool)
        whole[street_of[farthest <= inradius]] = True
        keep = ~whole[street_of]
        s, p = street_of[keep], point_of[keep]
        order = np.lexsort((p, s))
        s, p = s[order], p[order]
        rank = np.arange(len(s)) - np.searchsorted(s, s)  # the k-th point of its street
        remaining = lines.copy()
        remaining[whole] = shapely.LineString()
        buffers = {}
        for k in range(int(rank.max()) + 1 if len(rank) else 0):
            at = rank == k
            needed = np.unique(p[at])
            missing = needed[[q not in buffers for q in needed]]
            for q, poly in zip(missing, shapely.buffer(centres[missing], circumradius, quad_segs=QUAD_SEGS),
                               strict=True):
                buffers[q] = poly
            remaining[s[at]] = shapely.difference(remaining[s[at]], np.array([buffers[q] for q in p[at]]))
        bounds.append(geodesic_m(remaining, to_wgs84))
    return bounds[0], bounds[1], total


# -- the measurements --------------------------------------------------------------------------------------

def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def straight_case(db, *, segments: int, points: int, radius: float, repeat: int, limit_s: float) -> dict:
    """One city, one radius: the three ways timed side by side, and the engine against the shapely bounds."""
    with db.connect() as conn:
        forget_engines()
        started = time.perf_counter()
        engine_for(conn, metric_crs=BENCH_METRIC_CRS)
        load_ms = ms_since(started)
        started = time.perf_counter()
        ours = engine_uncovered(conn, radius=radius)
        first_ms = ms_since(started)
        warm_ms = median_ms(lambda: engine_uncovered(conn, radius=radius), repeat=repeat)
        # The summary rounds to the metre: the engine's own unrounded figure is compared with shapely's bounds.
        loaded = engine_for(conn, metric_crs=BENCH_METRIC_CRS)
        covered = loaded.covered(mode="straight", kinds=ALL_KINDS, radius=radius)
        unrounded_m = float(loaded.lengths(*loaded.whole_streets()).sum() - loaded.lengths(*covered).sum())
        curve = coverage.coverage_curve(conn, kinds=ALL_KINDS, mode="straight", radii=[radius],
                                        metric_crs=BENCH_METRIC_CRS)
        length_ms = median_ms(lambda: coverage.coverage_curve(conn, kinds=ALL_KINDS, mode="straight", radii=[radius],
                                                              metric_crs=BENCH_METRIC_CRS), repeat=repeat)
    naive = timed(limited(db, partial(naive_uncovered, radius=radius), limit_s=limit_s), repeat=repeat)
    previous = timed(limited(db, partial(previous_uncovered, radius=radius), limit_s=limit_s), repeat=repeat)
    started = time.perf_counter()
    low, high, total = reference_uncovered(db, radius=radius)
    row = {"segments": segments, "points": points, "radius": radius, "load_ms": load_ms, "first_ms": first_ms,
           "engine_ms": warm_ms, "length_ms": length_ms,
           "curve_uncovered_m": (curve["total_km"] - curve["curve"][0]["covered_km"]) * 1000,
           "naive": naive, "previous": previous, "engine_m": ours["uncovered_km"] * 1000,
           "engine_total_m": ours["total_km"] * 1000, "unrounded_m": unrounded_m,
           "naive_m": naive.answer[0] if naive.runs else None,
           "previous_m": previous.answer["uncovered_km"] * 1000 if previous.runs else None,
           "low_m": low, "high_m": high, "total_m": total,
           "reference_s": time.perf_counter() - started}
    print(f"{segments:,} segments, {points:,} points, {radius:.0f} m: load {load_ms:,.0f} ms, first "
          f"{first_ms:,.0f} ms, warm {warm_ms:,.1f} ms, length only {length_ms:,.1f} ms; "
          f"naive {naive.median_ms:,.0f} ms; previous "
          f"{previous.median_ms:,.0f} ms; uncovered {row['unrounded_m']:,.2f} m, shapely [{low:,.1f}, {high:,.1f}] m "
          f"({row['reference_s']:.0f} s); length only {row['curve_uncovered_m']:,.0f} m; naive {row['naive_m']} m, "
          f"previous {row['previous_m']} m",
          flush=True)
    return row


def engine_memory(db) -> dict:
    """Bytes traced by tracemalloc over a load and answers: retained after each, and the peak."""
    with db.connect() as conn:
        forget_engines()
        tracemalloc.start()
        try:
            engine_for(conn, metric_crs=BENCH_METRIC_CRS)
            loaded, peak = tracemalloc.get_traced_memory()
            for radius in RADII:
                engine_uncovered(conn, radius=radius)
            grid_coverage(conn, radius_m=RADII[-1], kinds=ALL_KINDS)
            answered, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return {"loaded": loaded, "answered": answered, "peak": peak}


def slider(db, *, repeat: int) -> dict:
    """A new radius, a new kind set and walking coverage on a loaded engine: per-call milliseconds."""
    out: dict = {}
    with db.connect() as conn:
        forget_engines()
        started = time.perf_counter()
        engine_for(conn, metric_crs=BENCH_METRIC_CRS)
        out["load_ms"] = ms_since(started)

        def once(func) -> float:
            started = time.perf_counter()
            func()
            return ms_since(started)

        out["first_streets_ms"] = once(lambda: uncovered_streets(conn, radius_m=500.0, kinds=ALL_KINDS))
        out["first_grids_ms"] = once(lambda: grid_coverage(conn, radius_m=500.0, kinds=ALL_KINDS))
        for label, call in (("streets", uncovered_streets), ("grids", grid_coverage)):
            out[f"radius_{label}"] = [once(lambda r=r, call=call: call(conn, radius_m=r, kinds=ALL_KINDS))
                                      for r in SLIDER_RADII]
        # A kind set is new once: the streets' call pays for the kind set, the grids' call after it does not.
        out["kinds_streets"], out["kinds_grids"] = [], []
        for kinds in SLIDER_KINDS:
            out["kinds_streets"].append(once(lambda k=kinds: uncovered_streets(conn, radius_m=500.0, kinds=k)))
            out["kinds_grids"].append(once(lambda k=kinds: grid_coverage(conn, radius_m=500.0, kinds=k)))
        out["first_walk_ms"] = once(lambda: uncovered_streets(conn, radius_m=500.0, kinds=ALL_KINDS, mode="walk"))
        out["walk_radius"] = [once(lambda r=r: uncovered_streets(conn, radius_m=r, kinds=ALL_KINDS, mode="walk"))
                              for r in WALK_RADII]
        out["walk_kinds"] = [once(lambda k=k: uncovered_streets(conn, radius_m=500.0, kinds=k, mode="walk"))
                             for k in SLIDER_KINDS]
        out["walk_grids"] = [once(lambda r=r: grid_coverage(conn, radius_m=r, kinds=ALL_KINDS, mode="walk"))
                             for r in WALK_RADII]
        out["same_streets_ms"] = median_ms(lambda: uncovered_streets(conn, radius_m=300.0, kinds=ALL_KINDS),
                                           repeat=repeat)
    return out


def slope(rows: list[dict], value: Callable[[dict], float | None]) -> float | None:
    """Least-squares slope of log(value) against log(segments); None with fewer than two sizes measured."""
    rows = [r for r in rows if value(r) is not None]
    if len({r["segments"] for r in rows}) < 2:
        return None
    x = np.log([r["segments"] for r in rows])
    y = np.log([value(r) for r in rows])
    return float(np.polyfit(x, y, 1)[0])


# -- the report ----------------------------------------------------------------------------------------------

def _s(ms: float) -> str:
    return f"{ms / 1000:,.2f} s" if ms >= 1000 else f"{ms:,.0f} ms" if ms >= 10 else f"{ms:,.1f} ms"


def _time(t: Timing, repeat: int) -> str:
    if t.runs == 0:
        return f"> {_s(t.first_ms)} (stopped)"
    return _s(t.median_ms) + ("" if t.runs == repeat else f" ({t.runs} run)")


def _ratio(t: Timing, engine_ms: float) -> str:
    return f"{'> ' if t.runs == 0 else ''}{t.median_ms / engine_ms:,.0f}×"


def _km(m: float | None) -> str:
    return "— (stopped)" if m is None else f"{m / 1000:,.3f} km"


def timing_table(rows: list[dict], repeat: int) -> str:
    lines = ["| segments | points | radius | engine load | first answer | engine (median) | engine, length only "
             "| naive ST_Union | previous SQL | naive / engine | previous / engine | naive / engine length only |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['segments']:,} | {r['points']:,} | {r['radius']:.0f} m | {_s(r['load_ms'])} | "
            f"{_s(r['first_ms'])} | **{_s(r['engine_ms'])}** | {_s(r['length_ms'])} | "
            f"{_time(r['naive'], repeat)} | {_time(r['previous'], repeat)} | "
            f"**{_ratio(r['naive'], r['engine_ms'])}** | "
            f"{_ratio(r['previous'], r['engine_ms'])} | {_ratio(r['naive'], r['length_ms'])} |")
    return "\n".join(lines)


def exactness_table(rows: list[dict]) -> str:
    lines = ["| segments | points | radius | street km | engine uncovered (summary) | unrounded | shapely bounds "
             "(1024-gons) | inside | engine − middle | of uncovered | bracket width | naive uncovered "
             "| previous uncovered |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        middle = (r["low_m"] + r["high_m"]) / 2
        diff = r["unrounded_m"] - middle
        inside = "yes" if r["low_m"] - 1e-3 <= r["unrounded_m"] <= r["high_m"] + 1e-3 else "**no**"
        rel = f"{abs(diff) / middle * 100:.4f} %" if middle > 0 else "—"
        width = f"{(r['high_m'] - r['low_m']) / middle * 100:.5f} %" if middle > 0 else "—"
        lines.append(
            f"| {r['segments']:,} | {r['points']:,} | {r['radius']:.0f} m | {r['total_m'] / 1000:,.1f} | "
            f"{r['engine_m'] / 1000:,.3f} km | {r['unrounded_m']:,.2f} m | {r['low_m']:,.2f} – {r['high_m']:,.2f} m | "
            f"{inside} | {diff:+,.2f} m | {rel} | {width} | {_km(r['naive_m'])} | {_km(r['previous_m'])} |")
    return "\n".join(lines)


def slope_lines(rows: list[dict]) -> str:
    lines = []
    for points in POINTS:
        for radius in RADII:
            case = [r for r in rows if r["points"] == points and r["radius"] == radius]
            fits = {name: slope(case, value) for name, value in (
                ("engine", lambda r: r["engine_ms"]), ("engine, length only", lambda r: r["length_ms"]),
                ("engine load", lambda r: r["load_ms"]),
                ("naive", lambda r: r["naive"].median_ms if r["naive"].runs else None),
                ("previous", lambda r: r["previous"].median_ms if r["previous"].runs else None))}
            if fits["engine"] is not None:
                lines.append(f"- {points:,} points, {radius:.0f} m: " + ", ".join(
                    f"{name} {fit:.2f}" for name, fit in fits.items() if fit is not None))
    return "\n".join(lines) or "- (one size only: no exponent)"


def slider_lines(s: dict, counts: dict) -> str:
    med = statistics.median
    return (
        f"On the 100,000-point city (`scaled_spec(blocks={SLIDER_BLOCKS}, points=100000)`: {counts['street']:,} "
        f"segments, {counts['point']:,} points, {counts['grid']:,} grids), after the load ({_s(s['load_ms'])}) and "
        f"a first answer at 500 m, every kind (uncovered streets {_s(s['first_streets_ms'])}, grid coverage "
        f"{_s(s['first_grids_ms'])}, which cuts the streets by the grids once). Each call below asks something new, "
        "once; medians over the calls (each call listed):\n\n"
        "| question | uncovered streets | grid coverage | target |\n|---|---|---|---|\n"
        f"| new radius ({', '.join(f'{r:.0f}' for r in SLIDER_RADII)} m) | **{_s(med(s['radius_streets']))}** "
        f"({', '.join(_s(t) for t in s['radius_streets'])}) | **{_s(med(s['radius_grids']))}** "
        f"({', '.join(_s(t) for t in s['radius_grids'])}) | ≤ 300 ms |\n"
        f"| new kind set, 500 m ({'; '.join('+'.join(k) for k in SLIDER_KINDS)}) | "
        f"**{_s(med(s['kinds_streets']))}** ({', '.join(_s(t) for t in s['kinds_streets'])}) | "
        f"**{_s(med(s['kinds_grids']))}** ({', '.join(_s(t) for t in s['kinds_grids'])}) | ≤ 300 ms |\n"
        f"| walking, new radius ({', '.join(f'{r:.0f}' for r in WALK_RADII)} m; first walk "
        f"{_s(s['first_walk_ms'])}) | **{_s(med(s['walk_radius']))}** "
        f"({', '.join(_s(t) for t in s['walk_radius'])}) | {_s(med(s['walk_grids']))} "
        f"({', '.join(_s(t) for t in s['walk_grids'])}) | ≤ 2 s |\n"
        f"| walking, new kind set, 500 m | **{_s(med(s['walk_kinds']))}** "
        f"({', '.join(_s(t) for t in s['walk_kinds'])}) | | ≤ 2 s |\n\n"
        f"The same question again (300 m, every kind; median of warm calls): {_s(s['same_streets_ms'])}.\n")


def report(*, rows: list[dict], loads: dict, memory: dict | None, largest: dict | None, slider_out: dict | None,
           slider_counts: dict | None, args: argparse.Namespace, elapsed_s: float) -> str:
    mib = 2 ** 20
    cities = "; ".join(f"`scaled_spec(blocks={b}, points=100000)`: {c['street']:,} segments, {c['grid']:,} grids"
                       + (f", generated and loaded in {s:,.0f} s" if s is not None else " (database reused)")
                       for b, (c, s) in loads.items())
    body = (
        f"Machine: {machine()}. Shared with other work while it ran: preliminary figures.\n\n"
        f"Cities: {cities}. The 10,000-point cities are the same cities with their first 10,000 points (exactly "
        "`scaled_spec(blocks, points=10000)`'s). Every kind counts, straight mode, whole city. Engine: "
        "`coverage.uncovered_streets` — the load, the first answer after it, then the median of "
        f"{args.repeat} warm calls. Naive: per street, `ST_Union` of the `quad_segs=2` buffers of the points near it "
        "(geography index), `ST_Difference`, metric lengths — as typed into psql; it answers a length only, so the "
        "engine is also timed answering a length only (`coverage.coverage_curve` at that one radius: covered km of "
        "the whole city, without the uncovered streets' features and per-street ranking). Previous: the SQL "
        "implementation before the engine (`bench/previous_coverage.py`). Baselines: median of "
        f"{args.repeat} runs after a first one, or that first run alone when it took over {SLOW_MS / 1000:.0f} s "
        "(marked); a query PostgreSQL stopped at the time limit "
        f"({args.limit:.0f} s; `statement_timeout`) is shown as more than that, its ratio as a lower bound.\n\n"
        + timing_table(rows, args.repeat) + "\n\n"
        "Exactness: the engine's uncovered length (its summary rounds to the metre; the unrounded figure is the "
        "engine's own, total minus covered street length) against shapely on the same tables — streets cut by "
        "1024-gons inside and around every circle, which bracket the exact length, pieces measured on the spheroid "
        "with `pyproj.Geod`. Target: within 0.01 % of the uncovered length; where the uncovered length is a few "
        "hundred metres the polygons' bracket itself is that wide, and the engine lying inside it is the test. "
        "The naive query's octagons lie inside the circles (more uncovered; metric lengths); the previous "
        "implementation is exact too.\n\n" + exactness_table(rows) + "\n\n"
        "Exponent of time against segments (least squares on log–log over the sizes, stopped queries left out; 1 is "
        "linear):\n\n"
        + slope_lines(rows) + "\n\n")
    if memory is not None and largest is not None:
        body += (
            f"Engine memory at the largest size ({largest['street']:,} segments, 100,000 points), traced by "
            "tracemalloc (Python and numpy allocations; RSS growth says little in a process that loaded engines "
            f"before): {memory['loaded'] / mib:,.0f} MiB retained after "
            f"the load, {memory['answered'] / mib:,.0f} MiB after answering 150 and 500 m and grid coverage (kind "
            f"set and grid pieces kept), peak {memory['peak'] / mib:,.0f} MiB.\n\n")
    if slider_out is not None:
        body += slider_lines(slider_out, slider_counts) + "\n"
    body += (f"The whole run took {elapsed_s / 60:.0f} min. Reproduce: "
             f"`.venv/bin/python -m bench.bench_coverage_engine --sizes {','.join(args.sizes)} "
             f"--repeat {args.repeat} --limit {args.limit:.0f}`.\n")
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda v: v.split(","), default=list(SIZES),
                        help=f"city sizes, comma-separated, of {', '.join(SIZES)} (street segments)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--limit", type=float, default=60.0,
                        help="seconds after which PostgreSQL stops a naive or previous query (reported as more)")
    parser.add_argument("--reload", action="store_true", help="generate and load the cities even when kept")
    parser.add_argument("--no-slider", action="store_true", help="skip the slider times on the 100,000-point city")
    args = parser.parse_args()
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes takes {', '.join(SIZES)}; got {', '.join(unknown)}")
    started = time.perf_counter()
    rows, loads, memory, largest = [], {}, None, None
    for size in sorted(args.sizes, key=SIZES.get):
        blocks = SIZES[size]
        db, counts, load_s = bench_city(blocks=blocks, points=POINTS[0], reload=args.reload)
        loads[blocks] = (counts, load_s)
        for points in POINTS:
            with first_points_only(db, points) if points < counts["point"] else nullcontext():
                for radius in RADII:
                    rows.append(straight_case(db, segments=counts["street"], points=points, radius=radius,
                                              repeat=args.repeat, limit_s=args.limit))
        if size == max(args.sizes, key=SIZES.get):
            memory, largest = engine_memory(db), counts
        forget_engines()
    slider_out = slider_counts = None
    if not args.no_slider:
        db, slider_counts, _ = bench_city(blocks=SLIDER_BLOCKS, points=100_000, reload=args.reload)
        slider_out = slider(db, repeat=args.repeat)
    body = report(rows=rows, loads=loads, memory=memory, largest=largest, slider_out=slider_out,
                  slider_counts=slider_counts, args=args, elapsed_s=time.perf_counter() - started)
    write_section("Coverage engine (issue 11)", body)
    print(body)


if __name__ == "__main__":
    main()
