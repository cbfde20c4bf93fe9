"""Shared bench helpers: a database of the bench's own, a scaled city, medians, and the machine description."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from geoservice import db
from geoservice.citygen import CitySpec, generate_city, scaled_spec
from geoservice.config import load_settings
from geoservice.crs import metric_crs_for
from geoservice.db.embedded import EmbeddedCluster
from geoservice.demo import load_city

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"


def city_arguments(doc: str, *, points: int, blocks: int, repeat: int) -> argparse.ArgumentParser:
    """The options every bench takes: the size of its generated city and how many timed runs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--points", type=int, default=points, help="convenience points in the generated city")
    parser.add_argument("--blocks", type=int, default=blocks, help="the city is blocks × blocks street blocks")
    parser.add_argument("--repeat", type=int, default=repeat, help="timed runs; the median is reported")
    return parser


def bench_database(name: str):
    """An engine on a migrated database of the bench's own (embedded cluster unless DATABASE_URL)."""
    settings = load_settings()
    if settings.database_url:
        url = db.database_url(settings)
    else:
        cluster = EmbeddedCluster(settings)
        cluster.up()
        cluster.ensure_database(name)
        url = cluster.url(name)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        db.upgrade(conn)
    return engine


# The generated cities lie where the demo does; their metric CRS is chosen as the settings would choose it.
BENCH_METRIC_CRS = metric_crs_for(*CitySpec().center)


def bench_engine(*, blocks: int, points: int, name: str = "geoservice_bench"):
    """An engine on a database of the bench's own, loaded with a generated city."""
    engine = bench_database(name)
    with engine.begin() as conn:
        started = time.perf_counter()
        city = generate_city(scaled_spec(blocks=blocks, points=points))
        counts = load_city(conn, city)
        conn.exec_driver_sql("ANALYZE")
    print(f"city of {blocks}x{blocks} blocks loaded in {time.perf_counter() - started:.1f} s: {counts}")
    return engine, counts


def median_ms(func: Callable[[], object], *, repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in milliseconds (after one warm-up call)."""
    func()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def machine() -> str:
    """One line describing where the numbers were taken."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {pg or 'psql not found'}")


def write_section(title: str, body: str) -> None:
    """Replace (or add) the section ``## title`` of docs/benchmarks.md."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n\n"
    marker = f"## {title}\n"
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + text[end + 1:] if end != -1 else text[:start]
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + marker + body.rstrip("\n") + "\n", encoding="utf-8")


def free_port() -> int:
    """A TCP port nobody listens on now (for a served app)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(engine, *, database: str, port: int, log: Path, wait_s: float = 120.0) -> subprocess.Popen:
    """``geoservice serve`` (gunicorn) on a bench database, connecting as the app role; waits for /healthz.

    Raises:
        RuntimeError: the app did not answer within ``wait_s`` (its log says why).
    """
    settings = load_settings()
    owner_url = engine.url.render_as_string(hide_password=False)
    app_url = EmbeddedCluster(settings).app_url(database) if not settings.database_url else owner_url
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": owner_url, "GEOSERVICE_APP_DATABASE_URL": app_url,
           "GEOSERVICE_BASEMAP": "none"}
    proc = subprocess.Popen([sys.executable, "-m", "geoservice", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    return wait_until_answering(proc, port=port, path="/healthz", log=log, wait_s=wait_s)


def wait_until_answering(proc: subprocess.Popen, *, port: int, path: str, log: Path,
                         wait_s: float = 120.0) -> subprocess.Popen:
    """``proc`` once ``path`` on ``port`` answers 200; stops it and raises RuntimeError if it does not in time."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"the server on port {port} did not start; see {log}")


def wrk(port: int, paths: list[str], *, seconds: int, connections: int = 8, threads: int = 2,
        headers: dict[str, str] | None = None, timeout_s: int = 60) -> dict:
    """wrk (Debian's ``wrk``) against ``paths`` in turn, one per request.

    Returns:
        ``rps``; ``latency`` (percentile → ms), ``p50`` and ``p99``; ``bad`` (non-2xx/3xx answers) and
        ``socket_errors`` (wrk's line, or None). A long ``timeout_s``: wrk leaves out of its latencies what it gave
        up on, so a slow answer must be waited for, not dropped.
    """
    header_table = "{" + ",".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()) + "}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("local paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n"
                     "local i = 0\n"
                     "request = function()\n"
                     "  i = i % #paths + 1\n"
                     f"  return wrk.format('GET', paths[i], {header_table})\n"
                     "end\n")
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout",
                              f"{timeout_s}s", "--latency", "-s", script.name, f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    latency = {int(p): float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u] for p, v, u in
               re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "latency": latency,
            "p50": latency.get(50), "p99": latency.get(99), "bad": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else None}
