"""OGC API – Features items and /healthz served: geoservice beside pygeoapi, and beside itself before issue 12.

Everything runs in one go on the 100,000-point bench city (``geoservice_lead_big``), one server loaded at a time:

- geoservice as ``geoservice serve`` runs it (gunicorn, 2 workers × 4 threads; ``bench.common.serve``);
- the same app as it was before keyset paging and the cheap /healthz (``--before``, default the commit before them),
  exported with ``git archive`` and served the same way (gunicorn, same settings), for the before/after figures;
- pygeoapi (PyPI, in its own venv ``bench/.venv-pygeoapi``, made here when missing; gitignored by a ``.gitignore``
  inside it) serving the same ``point`` table through its PostgreSQL provider, under gunicorn with the same workers
  and threads, connecting as the same read-only role.

wrk (2 threads, 8 connections, ``--seconds`` each; ``--rounds`` interleaved rounds, medians reported):
``items?bbox=…&limit=10`` over ``--views`` neighbourhood-sized boxes (a Lua script walks the list), the page at
offset 90,000 (``limit=10&offset=90000``) and, for geoservice, the same page reached by following ``next`` links
(``after=<id>``); ``/healthz``. Before timing, the answers are checked: the deep page by key and by offset hold
the ids plain SQL puts at 90,000..90,009, and numberMatched of every box equals pygeoapi's and a plain SQL count.

Targets (issue 12): bbox+limit 10 ≥ 10× pygeoapi's req/s; the deep page (keyset) ≥ 10× pygeoapi's deep page.

Needs wrk (Debian: ``apt-get install -y wrk``). Run:
``.venv/bin/python -m bench.bench_ogc [--database geoservice_lead_big] [--seconds 10] [--views 50]``.
The section goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench.common import ROOT, bench_database, free_port, machine, serve, write_section, wrk
from geoservice.config import load_settings
from geoservice.db.embedded import EmbeddedCluster

OUT = ROOT / "bench" / "out"
PYGEOAPI_VENV = ROOT / "bench" / ".venv-pygeoapi"
# pygeoapi's PostgreSQL provider needs SQLAlchemy, GeoAlchemy2 and psycopg2; pygeofilter for its filters.
PYGEOAPI_PACKAGES = ("pygeoapi", "psycopg2-binary", "SQLAlchemy", "GeoAlchemy2", "pygeofilter", "gunicorn")
BEFORE = "c64fdb7"
"""The commit before keyset paging and the cheap /healthz (issue 12, stream B)."""
DEEP_OFFSET = 90_000
PAGE = 10
TARGET_RATIO = 10.0
VIEW_DEGREES = (0.01, 0.008)  # about 0.9 km × 0.9 km at 34° N: what a phone shows at zoom 16


def ensure_pygeoapi() -> Path:
    """The pygeoapi venv's bin folder, made (``python -m venv`` + pip) when it is not there."""
    python = PYGEOAPI_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {PYGEOAPI_VENV} (pip install {' '.join(PYGEOAPI_PACKAGES)})")
        subprocess.run([sys.executable, "-m", "venv", str(PYGEOAPI_VENV)], check=True)
        (PYGEOAPI_VENV / ".gitignore").write_text("*\n")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PYGEOAPI_PACKAGES], check=True)
    return python.parent


def pygeoapi_version(bin_dir: Path) -> str:
    return subprocess.run([str(bin_dir / "python"), "-c", "import pygeoapi; print(pygeoapi.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def pygeoapi_config(url: sa.engine.URL, port: int, extent: list[float]) -> str:
    """pygeoapi's configuration: one collection, ``points``, the ``point`` table through its PostgreSQL provider."""
    config = {
        "server": {"bind": {"host": "127.0.0.1", "port": port}, "url": f"http://127.0.0.1:{port}",
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8", "language": "en-US",
                   "limits": {"default_items": PAGE, "max_items": 10_000},
                   "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OSM"},
                   "admin": False},
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {"title": "bench", "description": "bench", "keywords": ["bench"],
                               "keywords_type": "theme", "terms_of_service": "none", "url": "http://localhost"},
            "license": {"name": "none", "url": "http://localhost"},
            "provider": {"name": "bench", "url": "http://localhost"},
            "contact": {"name": "bench", "position": "bench", "address": "bench", "city": "bench",
                        "stateorprovince": "bench", "postalcode": "0", "country": "CN", "phone": "0", "fax": "0",
                        "email": "bench@localhost", "url": "http://localhost", "hours": "always",
                        "instructions": "none", "role": "pointOfContact"}},
        "resources": {"points": {
            "type": "collection", "title": "points", "description": "convenience points", "keywords": ["points"],
            "extents": {"spatial": {"bbox": extent, "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [{"type": "feature", "name": "PostgreSQL", "id_field": "id", "table": "point",
                           "geom_field": "geom",
                           "data": {"host": url.host, "port": url.port, "dbname": url.database,
                                    "user": url.username, "password": url.password, "search_path": ["public"]}}],
        }},
    }
    return json.dumps(config)  # YAML is a superset of JSON


def wait_for(port: int, path: str, proc: subprocess.Popen, log: Path, wait_s: float = 120.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} stopped; see {log}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"the server on port {port} did not answer {path}; see {log}")


def serve_pygeoapi(bin_dir: Path, url: sa.engine.URL, extent: list[float], port: int) -> subprocess.Popen:
    """pygeoapi under gunicorn (2 workers × 4 threads, as geoservice), on ``port``."""
    work = OUT / "pygeoapi"
    work.mkdir(parents=True, exist_ok=True)
    config, openapi = work / "pygeoapi-config.yml", work / "pygeoapi-openapi.yml"
    config.write_text(pygeoapi_config(url, port, extent))
    env = {**os.environ, "PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(openapi)}
    subprocess.run([str(bin_dir / "pygeoapi"), "openapi", "generate", str(config), "--output-file", str(openapi)],
                   env=env, check=True, capture_output=True)
    log = OUT / "bench_ogc_pygeoapi.log"
    proc = subprocess.Popen([str(bin_dir / "gunicorn"), "--workers", "2", "--worker-class", "gthread", "--threads",
                             "4", "--bind", f"127.0.0.1:{port}", "pygeoapi.flask_app:APP"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=work)
    wait_for(port, "/collections/points/items?limit=1&f=json", proc, log)
    return proc


def serve_before(engine, database: str, commit: str, port: int) -> subprocess.Popen:
    """geoservice as it was at ``commit`` (``git archive``), served by ``geoservice serve`` like today's."""
    tree = OUT / f"geoservice-{commit}"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit, "geoservice"], cwd=ROOT, capture_output=True, check=True)
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive.stdout)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(tree, filter="data")
    settings = load_settings()
    owner_url = engine.url.render_as_string(hide_password=False)
    app_url = EmbeddedCluster(settings).app_url(database) if not settings.database_url else owner_url
    log = OUT / "bench_ogc_before.log"
    # The exported package comes first on the path (python -m puts the working directory first).
    env = {**os.environ, "DATABASE_URL": owner_url, "GEOSERVICE_APP_DATABASE_URL": app_url,
           "GEOSERVICE_BASEMAP": "none", "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-m", "geoservice", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tree)
    wait_for(port, "/healthz", proc, log)
    return proc


def get(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", path, headers={"Accept": "application/geo+json"})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path} on port {port}: {response.status} {body[:300]!r}")
    return json.loads(body)


def keyset_deep_page(port: int) -> tuple[str, int]:
    """The address of the page of 10 after the first 90,000 points, found by following ``next`` links from the first
    page (pages of 10,000 to get there), and how many pages were followed."""
    path, seen, pages = "/ogc/collections/points/items?limit=10000&f=json", 0, 0
    while seen < DEEP_OFFSET:
        doc = get(port, path)
        seen += doc["numberReturned"]
        pages += 1
        href = next(link["href"] for link in doc["links"] if link["rel"] == "next")
        path = urlsplit(href).path + "?" + urlsplit(href).query
    assert seen == DEEP_OFFSET, seen
    return path.replace("limit=10000", f"limit={PAGE}"), pages


def views(engine, count: int) -> list[tuple[float, float, float, float]]:
    """``count`` neighbourhood-sized boxes at random points of the city (fixed seed)."""
    with engine.connect() as conn:
        spots = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point ORDER BY id")).all()
    rng = random.Random(12)
    dx, dy = VIEW_DEGREES
    return [(round(x - dx / 2, 5), round(y - dy / 2, 5), round(x + dx / 2, 5), round(y + dy / 2, 5))
            for x, y in rng.sample(spots, count)]


def check(engine, ours: int, before: int, theirs: int, deep_keyset: str, boxes: list) -> dict:
    """Both servers' answers against plain SQL; figures for the report."""
    with engine.connect() as conn:
        expected = conn.execute(sa.text("SELECT id FROM point WHERE status <> 'planned' ORDER BY id "
                                        f"OFFSET {DEEP_OFFSET} LIMIT {PAGE}")).scalars().all()
        counts = [conn.execute(sa.text("SELECT count(*) FROM point WHERE status <> 'planned' AND ST_X(geom) "
                                       "BETWEEN :a AND :c AND ST_Y(geom) BETWEEN :b AND :d"),
                               dict(zip("abcd", box, strict=True))).scalar_one() for box in boxes]
    by_key = [f["id"] for f in get(ours, deep_keyset)["features"]]
    by_offset = [f["id"] for f in get(ours, f"/ogc/collections/points/items?limit={PAGE}&offset={DEEP_OFFSET}")
                 ["features"]]
    assert by_key == by_offset == expected, (by_key, by_offset, expected)
    for box, count in zip(boxes, counts, strict=True):
        bbox = ",".join(map(str, box))
        mine = get(ours, f"/ogc/collections/points/items?bbox={bbox}&limit={PAGE}")
        old = get(before, f"/ogc/collections/points/items?bbox={bbox}&limit={PAGE}")
        other = get(theirs, f"/collections/points/items?bbox={bbox}&limit={PAGE}&f=json")
        assert mine["numberMatched"] == old["numberMatched"] == other["numberMatched"] == count, (box, count)
        assert [f["id"] for f in mine["features"]] == [f["id"] for f in old["features"]]
        assert len(other["features"]) == min(PAGE, count)
    return {"matched": (min(counts), sorted(counts)[len(counts) // 2], max(counts))}


def settle(measured: dict) -> None:
    """Wait for the requests wrk left running when it stopped (a deep offset page takes seconds) to finish, so the
    next measurement starts on an idle server."""
    time.sleep(min(15.0, 1.0 + 2 * (measured["p99"] or 0) / 1000))


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="geoservice_lead_big", help="an existing bench city database")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each measurement")
    parser.add_argument("--views", type=int, default=50, help="bbox requests walk this many boxes")
    parser.add_argument("--before", default=BEFORE, help="the commit served as 'before'")
    parser.add_argument("--rounds", type=int, default=3, help="every measurement this many times, interleaved")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    bin_dir = ensure_pygeoapi()
    engine = bench_database(args.database)
    settings = load_settings()
    app_url = sa.engine.make_url(EmbeddedCluster(settings).app_url(args.database)
                                 if not settings.database_url else engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        sizes = conn.execute(sa.text("SELECT (SELECT count(*) FROM point), (SELECT count(*) FROM street), "
                                     "(SELECT count(*) FROM grid)")).one()
        extent = list(conn.execute(sa.text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                           "(SELECT ST_Extent(geom) AS e FROM point) x")).one())
    boxes = views(engine, args.views)
    OUT.mkdir(parents=True, exist_ok=True)
    ports = {"ours": free_port(), "before": free_port(), "pygeoapi": free_port()}
    procs = []
    load_start = load_average()
    try:
        procs.append(serve(engine, database=args.database, port=ports["ours"], log=OUT / "bench_ogc_serve.log"))
        procs.append(serve_before(engine, args.database, args.before, ports["before"]))
        procs.append(serve_pygeoapi(bin_dir, app_url, extent, ports["pygeoapi"]))
        deep_keyset, followed = keyset_deep_page(ports["ours"])
        facts = check(engine, ports["ours"], ports["before"], ports["pygeoapi"], deep_keyset, boxes)
        bbox_paths = [f"/ogc/collections/points/items?bbox={','.join(map(str, b))}&limit={PAGE}" for b in boxes]
        pygeoapi_bbox = [f"/collections/points/items?bbox={','.join(map(str, b))}&limit={PAGE}&f=json"
                         for b in boxes]
        offset = f"limit={PAGE}&offset={DEEP_OFFSET}"
        runs = [
            ("bbox + limit 10", "pygeoapi", ports["pygeoapi"], pygeoapi_bbox),
            ("bbox + limit 10", "geoservice before", ports["before"], bbox_paths),
            ("bbox + limit 10", "geoservice", ports["ours"], bbox_paths),
            ("deep page: offset 90,000", "pygeoapi", ports["pygeoapi"], [f"/collections/points/items?{offset}&f=json"]),
            ("deep page: offset 90,000", "geoservice before", ports["before"],
             [f"/ogc/collections/points/items?{offset}"]),
            ("deep page: offset 90,000", "geoservice (offset kept)", ports["ours"],
             [f"/ogc/collections/points/items?{offset}"]),
            ("deep page: after the 90,000th id (next links)", "geoservice", ports["ours"], [deep_keyset]),
            ("/healthz", "geoservice before", ports["before"], ["/healthz"]),
            ("/healthz", "geoservice", ports["ours"], ["/healthz"]),
            ("/healthz?counts=exact", "geoservice", ports["ours"], ["/healthz?counts=exact"]),
        ]
        # Rounds: every measurement once per round, in the same order, so that a pair compared was taken minutes
        # apart at most whatever else the shared machine was doing; the report takes medians.
        results = [(request, server, []) for request, server, _, _ in runs]
        for number in range(args.rounds):
            for (request, server, port, paths), (_, _, rounds) in zip(runs, results, strict=True):
                measured = wrk(port, paths, seconds=args.seconds, headers={"Accept": "application/geo+json"})
                settle(measured)
                print(f"round {number + 1}: {request:48} {server:26} {measured['rps']:9.1f} req/s  "
                      f"p50 {measured['p50']} ms  p99 {measured['p99']} ms  non-2xx {measured['bad']}")
                rounds.append(measured)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    context = {"sizes": sizes, "facts": facts, "followed": followed, "deep_keyset": deep_keyset, "boxes": boxes,
               "version": pygeoapi_version(bin_dir), "load": (load_start, load_average())}
    write_section("OGC API – Features items and /healthz (issue 12)", report(results, context, args))


def _rounds(results, request: str, server: str) -> list[dict]:
    return next(rounds for r, s, rounds in results if r == request and s == server)


def _ratio(results, mine: tuple[str, str], theirs: tuple[str, str]) -> float:
    """The median over the rounds of the req/s ratio of two measurements taken in the same round."""
    return statistics.median(a["rps"] / b["rps"] for a, b in zip(_rounds(results, *mine), _rounds(results, *theirs),
                                                                     strict=True))


def report(results: list, context: dict, args: argparse.Namespace) -> str:
    """The section of docs/benchmarks.md."""
    sizes, facts, boxes, deep_keyset = context["sizes"], context["facts"], context["boxes"], context["deep_keyset"]
    load_start, load_end = context["load"]
    lines = [
        f"Machine: {machine()}; load average (1/5/15 min) {load_start} at the start, {load_end} at the end (the "
        "machine is shared: other benches and test suites ran beside this one).",
        "",
        f"City: `{args.database}`, {sizes[0]:,} points, {sizes[1]:,} streets, {sizes[2]:,} grids. Servers: geoservice "
        "(`geoservice serve`: gunicorn, 2 workers × 4 threads), geoservice before issue 12's paging and /healthz "
        f"(commit `{args.before}`, served the same way), pygeoapi {context['version']} (PyPI, own venv; PostgreSQL "
        "provider on the same `point` table, as the same read-only role; gunicorn, 2 workers × 4 threads). wrk, "
        f"2 threads, 8 connections, {args.seconds} s each, one server loaded at a time, {args.rounds} rounds (each "
        "measurement once per round, in the same order). bbox requests walk "
        f"{len(boxes)} boxes of {VIEW_DEGREES[0]}° × {VIEW_DEGREES[1]}° around random points ({facts['matched'][0]}–"
        f"{facts['matched'][2]} points in a box, median {facts['matched'][1]}). The deep page by key is "
        f"`{deep_keyset.split('?')[1]}`, the address the `next` links lead to after {DEEP_OFFSET:,} points (found by "
        f"following {context['followed']} pages of 10,000). Checked before timing: the deep page by key and by offset "
        "hold the ids plain SQL puts at 90,000–90,009; numberMatched of every box is the same for all three servers "
        "and equals a plain SQL count.",
        "",
        "| request | server | req/s, median (each round) | p50 | p99 | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for request, server, rounds in results:
        rps = [m["rps"] for m in rounds]
        lines.append(f"| {request} | {server} | {statistics.median(rps):,.1f} ({', '.join(f'{v:,.0f}' for v in rps)}) "
                     f"| {statistics.median(m['p50'] for m in rounds):.1f} ms "
                     f"| {statistics.median(m['p99'] for m in rounds):.1f} ms | {sum(m['bad'] for m in rounds)} |")
    bbox_ratio = _ratio(results, ("bbox + limit 10", "geoservice"), ("bbox + limit 10", "pygeoapi"))
    deep_ratio = _ratio(results, ("deep page: after the 90,000th id (next links)", "geoservice"),
                        ("deep page: offset 90,000", "pygeoapi"))
    health_ratio = _ratio(results, ("/healthz", "geoservice"), ("/healthz", "geoservice before"))
    lines += [
        "",
        f"Ratios are medians over the {args.rounds} rounds of the ratio within each round.",
        "",
        f"- bbox + limit 10: {bbox_ratio:.1f}× pygeoapi (target ≥ {TARGET_RATIO:.0f}×: "
        f"{'met' if bbox_ratio >= TARGET_RATIO else 'missed'}).",
        f"- deep page by `next` links: {deep_ratio:.1f}× pygeoapi's page at offset 90,000 (target ≥ "
        f"{TARGET_RATIO:.0f}×: {'met' if deep_ratio >= TARGET_RATIO else 'missed'}).",
        f"- /healthz: {health_ratio:.1f}× before (estimated counts from the statistics; exact counts on request).",
        "",
        f"Reproduce: `.venv/bin/python -m bench.bench_ogc --database {args.database} --seconds {args.seconds} "
        f"--views {args.views} --rounds {args.rounds}` (needs wrk; makes bench/.venv-pygeoapi when missing).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
