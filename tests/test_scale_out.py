"""Scale-out on this machine: two app processes behind Caddy, a primary and a streaming replica, under a wrk load.

The layout: a primary (an embedded cluster of this module's own) with the demo city and a hot standby made from it
with ``pg_basebackup -R`` (tests/clusters.py); two app processes started as ``deploy/geoservice@.service`` starts
each (``geoservice serve --host 127.0.0.1 --port P --workers 2``), connecting to the primary through libpq's
multi-host URL ``?host=primary&host=replica&target_session_attrs=read-write`` and reading the public's requests from
the replica; Caddy from ``deploy/Caddyfile`` in front (tests/proxy.py).

The load is wrk on loopback, bounded: a fixed number of connections (:data:`CONNECTIONS`), each pausing
:data:`PAUSE_MS` between requests, for a fixed number of seconds; the paths are the public's reads (nearest, tiles,
OGC items, layers). A failed request is a non-2xx/3xx answer or a socket error.

Which server answered is told by the answer itself: the replica's replay is paused and the primary's data version
moved on, so a tile's ETag carries the replica's version or the primary's.

Bounds stated: killing one app process (its gunicorn master and workers, kill -9) costs at most the requests in
flight (at most :data:`CONNECTIONS`), then none; stopping the replica costs at most the requests in flight on it, then
none, the primary answering; stopping the primary and promoting the replica brings the service back without restarting
an app, and every point created before the stop is there.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from geoservice import db
from geoservice.citygen import demo_spec
from tests.accounts_helpers import PASSWORD, add_user
from tests.clusters import clusters_folder, libpq_multi_host_url, make_demo_primary, make_replica, sql, wait_until
from tests.conftest import ARTIFACTS, DEMO_METRIC_CRS, ROOT, wait_for_http
from tests.proxy import DEPLOY, local_certificate, start_proxy, unit_command
from tests.test_login import Browserless

PRIMARY_PORT = 56320
REPLICA_PORT = 56321
APP_PORTS = (56330, 56331)
HTTPS_PORT = 56340
HTTP_PORT = 56341
CONNECTIONS = 4
PAUSE_MS = 10
RETRY_S = 2
LOGIN_MAX_FAILURES = 3
UA = "pytest-scale-out/1.0"
LON, LAT = demo_spec().center


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ (Web Mercator) tile holding a spot."""
    n = 2 ** z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


PROBE_TILE = "/tiles/streets/{}/{}/{}.mvt".format(14, *tile_of(LON, LAT, 14))


def load_paths() -> list[str]:
    """The public's reads: nearest at a few spots, tiles of three layers, OGC items by bbox, a layer."""
    paths = []
    for i in range(6):
        lon, lat = LON + 0.01 * (i - 3), LAT + 0.006 * (i % 3 - 1)
        paths.append(f"/api/v1/nearest?lon={lon:.6f}&lat={lat:.6f}&k=5")
        paths.append(f"/ogc/collections/points/items?bbox={lon - 0.01:.5f},{lat - 0.008:.5f},{lon + 0.01:.5f},"
                     f"{lat + 0.008:.5f}&limit=10&f=json")
    for z in (13, 15):
        x, y = tile_of(LON, LAT, z)
        paths += [f"/tiles/{layer}/{z}/{x}/{y}.mvt" for layer in ("points", "streets", "grids")]
    paths.append("/api/v1/layers/districts")
    return paths


# -- wrk -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadResult:
    """What one wrk run counted."""

    requests: int
    bad: int                      # answers other than 2xx/3xx
    socket_errors: dict[str, int]  # connect, read, write, timeout

    @property
    def failed(self) -> int:
        return self.bad + sum(self.socket_errors.values())

    def __str__(self) -> str:
        return f"{self.requests} requests, {self.failed} failed ({self.bad} non-2xx/3xx, sockets {self.socket_errors})"


class Wrk:
    """wrk against ``base_url`` for ``seconds``, the paths in turn, started at once; :meth:`result` waits for it."""

    def __init__(self, base_url: str, paths: list[str], *, seconds: int) -> None:
        self.script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        self.script.write("local paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n"
                          "local i = 0\n"
                          "request = function()\n"
                          "  i = i % #paths + 1\n"
                          f"  return wrk.format('GET', paths[i], {{['User-Agent'] = '{UA}'}})\n"
                          "end\n"
                          f"delay = function() return {PAUSE_MS} end\n")
        self.script.close()
        self.process = subprocess.Popen(
            ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "30s", "-s", self.script.name,
             base_url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> LoadResult:
        out, _ = self.process.communicate(timeout=120)
        os.unlink(self.script.name)
        assert self.process.returncode == 0, out
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        return LoadResult(
            requests=int(re.search(r"(\d+) requests in", out).group(1)), bad=int(bad.group(1)) if bad else 0,
            socket_errors=dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
            if errors else {})


# -- the layout ----------------------------------------------------------------------------------------------------

class AppProcess:
    """One app process started from ``deploy/geoservice@.service``'s ExecStart, in a session of its own (so that
    ``kill()`` reaches its gunicorn master and workers at once, as the kernel's OOM killer or a crash would)."""

    def __init__(self, port: int, env: dict[str, str], log_dir) -> None:
        self.port, self.env, self.log_dir = port, env, log_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_dir / f"app-{self.port}.log", "a") as log:
            self.process = subprocess.Popen(
                unit_command(DEPLOY / "geoservice@.service", str(self.port)), env={**os.environ, **self.env},
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        wait_for_http(f"http://127.0.0.1:{self.port}/healthz")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=40)
            self.process = None


@dataclass
class Layout:
    primary: object
    replica: object
    apps: list[AppProcess]
    proxy: object
    owner: sa.Engine           # the owner, on whichever server is the primary (the multi-host URL)
    tokens: dict[str, str]

    def get(self, path: str, *, who: str | None = None, method: str = "GET",
            body: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request through the proxy over TLS (the certificate checked), as the public or with ``who``'s token."""
        headers = {"User-Agent": UA}
        if who:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        tls = ssl.create_default_context(cafile=str(self.proxy.ca_file))
        conn = http.client.HTTPSConnection(self.proxy.host, self.proxy.https_port, context=tls, timeout=60)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def layout(base_settings, demo_city):
    folder = clusters_folder("test-scale-out")
    primary = make_demo_primary(base_settings.replace(db_name="geoservice", metric_crs=DEMO_METRIC_CRS),
                                folder / "primary", PRIMARY_PORT, demo_city)
    try:
        replica = make_replica(primary, folder / "replica", REPLICA_PORT)
    except BaseException:
        primary.down()
        raise
    hosts = [("127.0.0.1", PRIMARY_PORT), ("127.0.0.1", REPLICA_PORT)]
    owner_url = libpq_multi_host_url(primary.url(), *hosts, target_session_attrs="read-write")
    env = {
        "DATABASE_URL": owner_url,
        "GEOSERVICE_APP_DATABASE_URL": libpq_multi_host_url(primary.app_url(), *hosts,
                                                            target_session_attrs="read-write"),
        "GEOSERVICE_REPLICA_URLS": replica.cluster.app_url(),
        "GEOSERVICE_REPLICA_RETRY_S": str(RETRY_S),
        # A paused replica stays in the rotation: the tests tell the servers apart by the version it has stopped at.
        "GEOSERVICE_REPLICA_MAX_LAG_S": "3600",
        "GEOSERVICE_SECRET_KEY": secrets.token_urlsafe(32),  # one key for every process: sessions hold across them
        "GEOSERVICE_LOGIN_MAX_FAILURES": str(LOGIN_MAX_FAILURES),
        "GEOSERVICE_TRUSTED_PROXIES": "1",
        "GEOSERVICE_BASEMAP": "none",
        "GEOSERVICE_METRIC_CRS": DEMO_METRIC_CRS,
    }
    owner = db.make_engine(owner_url)
    apps = [AppProcess(port, env, ARTIFACTS) for port in APP_PORTS]
    proxy = None
    try:
        tokens = {role: add_user(owner, role)[1] for role in ("officer", "planner")}
        replica.catch_up(primary)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for app in apps:
            app.start()
        proxy = start_proxy([f"127.0.0.1:{p}" for p in APP_PORTS], https_port=HTTPS_PORT, http_port=HTTP_PORT,
                            folder=folder / "caddy", certificate=local_certificate(folder / "certificate"))
        yield Layout(primary, replica, apps, proxy, owner, tokens)
    finally:
        if proxy is not None:
            proxy.stop()
        for app in apps:
            app.stop()
        owner.dispose()
        for cluster in (replica.cluster, primary):
            if cluster.status().running:
                cluster.down()
        shutil.rmtree(folder, ignore_errors=True)


def data_version(cluster) -> int:
    return sql(cluster, "SELECT version FROM data_version", database="geoservice")[0][0]


@contextmanager
def replica_behind(layout: Layout):
    """The replica's replay paused and the primary's data version moved on: yields (replica's, primary's)."""
    layout.replica.pause_replay()
    try:
        sql(layout.primary, "UPDATE squad SET phone = phone WHERE id = (SELECT min(id) FROM squad)",
            database="geoservice")
        behind, ahead = data_version(layout.replica.cluster), data_version(layout.primary)
        assert behind < ahead
        yield behind, ahead
    finally:
        if layout.replica.cluster.status().running:
            layout.replica.resume_replay()


def answering_versions(layout: Layout, n: int = 12, who: str | None = None) -> list[int]:
    """The data version of ``n`` answers to the probe tile through the proxy (from their ETags)."""
    versions = []
    for _ in range(n):
        status, headers, _ = layout.get(PROBE_TILE, who=who)
        assert status == 200
        versions.append(int(re.search(r'"v(\d+)-', headers["ETag"]).group(1)))
    return versions


def report(line: str) -> None:
    print(f"\nscale-out: {line}")


# -- the tests -----------------------------------------------------------------------------------------------------

def test_the_public_reads_from_the_replica_and_users_from_the_primary(layout):
    for path in load_paths():
        assert layout.get(path)[0] == 200, path
    with replica_behind(layout) as (behind, ahead):
        assert answering_versions(layout) == [behind] * 12
        assert answering_versions(layout, who="officer") == [ahead] * 12
    baseline = Wrk(layout.proxy.url, load_paths(), seconds=3).result()
    report(f"baseline through Caddy, two app processes: {baseline}")
    assert baseline.requests > 0
    assert baseline.failed == 0


def test_a_login_holds_on_either_app_process_and_failed_logins_count_across_them(layout):
    """Stateless processes: the session made by one is honoured by the other (one key, from the settings), and
    failed logins are counted in the primary, so the per-account limit is one limit, not one per process."""
    first, second = (f"http://127.0.0.1:{app.port}" for app in layout.apps)
    user, _ = add_user(layout.owner, "planner")
    client = Browserless(first)
    status, _, _ = client.request("/login", {"username": user.username, "password": PASSWORD,
                                             "csrf_token": client.login_form()})
    assert status == 303
    client.base = second  # the cookie jar ignores ports: the same session cookie goes to the other process
    assert json.loads(client.request("/api/v1/me")[2])["user"]["username"] == user.username

    guessed, _ = add_user(layout.owner, "planner")
    statuses = []
    for attempt in range(LOGIN_MAX_FAILURES + 2):
        guesser = Browserless((first, second)[attempt % 2])
        statuses.append(guesser.request("/login", {"username": guessed.username, "password": "wrong password",
                                                   "csrf_token": guesser.login_form()})[0])
    assert statuses == [401] * LOGIN_MAX_FAILURES + [429, 429]
    with layout.owner.begin() as conn:
        conn.execute(sa.text("DELETE FROM login_failure WHERE username = :u"), {"u": guessed.username})


def test_killing_an_app_process_costs_at_most_the_requests_in_flight(layout):
    victim = layout.apps[0]
    load = Wrk(layout.proxy.url, load_paths(), seconds=6)
    time.sleep(2)
    victim.kill()
    during = load.result()
    after = Wrk(layout.proxy.url, load_paths(), seconds=3).result()
    report(f"kill -9 of app process {victim.port} under load: {during}; then {after}")
    victim.start()
    assert during.requests > 0 and after.requests > 0
    assert during.failed <= CONNECTIONS
    assert after.failed == 0


def test_a_stopped_replica_leaves_the_reads_to_the_primary(layout):
    with replica_behind(layout) as (_behind, ahead):
        load = Wrk(layout.proxy.url, load_paths(), seconds=6)
        time.sleep(2)
        layout.replica.stop()
        during = load.result()
        after = Wrk(layout.proxy.url, load_paths(), seconds=3).result()
        report(f"replica stopped under load: {during}; then {after}")
        assert answering_versions(layout) == [ahead] * 12  # the public's reads, answered by the primary
    assert during.failed <= CONNECTIONS
    assert after.failed == 0
    layout.replica.start()
    layout.replica.catch_up(layout.primary)
    time.sleep(RETRY_S)  # the replica is tried again after this long
    with replica_behind(layout) as (behind, _ahead):
        assert answering_versions(layout) == [behind] * 12  # back on the replica


def create_points(layout: Layout, n: int) -> list[int]:
    ids = []
    for i in range(n):
        status, _, body = layout.get("/api/v1/points", who="planner", method="POST", body={
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [LON + 0.001 * i, LAT + 0.0005 * i]},
            "properties": {"name": f"扩容测试点 {i}", "kind": "rest_station"}})
        assert status == 201, body
        ids.append(json.loads(body)["id"])
    return ids


def test_promoting_the_replica_brings_the_service_back_with_every_committed_write(layout):
    wait_until(lambda: sql(layout.replica.cluster, "SELECT status FROM pg_stat_wal_receiver") == [("streaming",)],
               "the replica to stream from the primary")
    committed = create_points(layout, 20)
    load = Wrk(layout.proxy.url, load_paths(), seconds=8)
    time.sleep(1)
    layout.primary.down()  # fast shutdown: the primary sends its WAL to the connected standby before it exits
    # No primary: writes are refused with a 503 (Retry-After), the public still reads from the replica.
    status, headers, body = layout.get("/api/v1/points", who="planner", method="POST", body={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [LON, LAT]},
        "properties": {"name": "无主库时的点", "kind": "rest_station"}})
    assert (status, json.loads(body)["code"], headers["Retry-After"]) == (503, "DatabaseUnavailable", "5")
    assert layout.get(PROBE_TILE)[0] == 200
    layout.replica.promote()
    attempts = []
    while True:  # writes fail (503) until the apps' multi-host URL finds the new primary; no app is restarted
        status, _, body = layout.get("/api/v1/points", who="planner", method="POST", body={
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [LON, LAT]},
            "properties": {"name": "提升后的点", "kind": "rest_station"}})
        attempts.append(status)
        if status == 201:
            break
        assert status == 503, body
        assert len(attempts) < 100
        time.sleep(0.2)
    reads = load.result()
    report(f"primary stopped, replica promoted: public reads under load {reads}; writes answered "
           f"{attempts.count(503)} × 503 then 201")
    assert reads.failed <= CONNECTIONS
    after = json.loads(body)["id"]
    with layout.owner.connect() as conn:  # the multi-host URL: now the promoted replica
        assert conn.execute(sa.text("SELECT inet_server_port()")).scalar_one() == REPLICA_PORT
        found = conn.execute(sa.text("SELECT id FROM point WHERE id = ANY(:ids) ORDER BY id"),
                             {"ids": [*committed, after]}).scalars().all()
    assert found == sorted([*committed, after])
    for point_id in (*committed, after):
        assert layout.get(f"/api/v1/points/{point_id}", who="officer")[0] == 200
    status, _, body = layout.get("/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
