"""Fit for the public internet: bounded work per request, no 500 from malformed input, JSON for every error status,
503 with Retry-After when the database is away or busy, and recovery without a restart.

Served tests drive ``geoservice serve`` (gunicorn, 2 workers × 4 threads) as production runs it.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from geoservice.app import create_app
from geoservice.budget import _SLOT_NAMESPACE
from tests.conftest import free_port, serving

WHOLE_GLOBE = "-180,-90,180,90"


def get(base: str, path: str, timeout: float = 120) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as response:
            return response.status, json.load(response), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


# -- a box far larger than the city is the whole city ---------------------------------------------------------------

@pytest.mark.parametrize("bbox", [WHOLE_GLOBE, "100,20,130,50", "113.0,33.0,115.0,35.0"])
def test_a_huge_bbox_gives_the_whole_city_at_once(client, bbox):
    whole = client.get("/api/v1/coverage/streets?radius=300&kind=toilet").get_json()["summary"]
    started = time.perf_counter()
    boxed = client.get(f"/api/v1/coverage/streets?radius=300&kind=toilet&bbox={bbox}").get_json()["summary"]
    print(f"bbox {bbox}: {time.perf_counter() - started:.2f} s")
    assert whole["total_km"] > 100  # the demo city's streets, not 0 as a globe box gave before
    assert boxed["total_km"] == pytest.approx(whole["total_km"], abs=0.002)
    assert boxed["uncovered_km"] == pytest.approx(whole["uncovered_km"], abs=0.002)


def test_a_bbox_outside_the_city_covers_no_street(client):
    summary = client.get("/api/v1/coverage/streets?bbox=2,48,3,49").get_json()["summary"]
    assert summary["total_km"] == 0 and summary["covered_pct"] is None


def test_layers_are_bounded_without_a_limit(client):
    from geoservice.features import MAX_LIMIT

    body = client.get("/api/v1/layers/points").get_json()
    assert body["truncated"] is False and len(body["features"]) <= MAX_LIMIT
    doc = client.get("/api/v1/openapi.json").get_json()
    limit = next(p for p in doc["paths"]["/api/v1/layers/{layer}"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == limit["schema"]["default"] == MAX_LIMIT


# -- malformed input is a 400 naming the parameter ------------------------------------------------------------------

MALFORMED_BBOXES = ["1,,2,3", ",,,", "113,34,114,", "113, ,114,35", " , , , ", "113,34,114,35,"]


@pytest.mark.parametrize("bbox", MALFORMED_BBOXES)
@pytest.mark.parametrize("path", ["/api/v1/layers/points", "/api/v1/coverage/streets",
                                  "/ogc/collections/points/items"])
def test_a_malformed_bbox_is_a_400_naming_bbox(client, path, bbox):
    response = client.get(path, query_string={"bbox": bbox})
    assert response.status_code == 400, (path, bbox, response.get_data(as_text=True)[:200])
    body = response.get_json()
    assert set(body) == {"code", "description"} and "bbox" in body["description"]


@pytest.mark.parametrize("q", ["a\x00b", "\x00", "三八\n路", "x\x7fy"])
def test_control_characters_in_search_are_a_400(client, q):
    response = client.get("/api/v1/points/search", query_string={"q": q})
    assert response.status_code == 400
    assert "control characters" in response.get_json()["description"]


@pytest.mark.parametrize("path", ["/api/v1/nearest?lon=113.8&lat=34&lon=113.9",
                                  "/api/v1/coverage/grids?mode=walk&mode=straight",
                                  "/ogc/collections/points/items?limit=1&limit=2"])
def test_a_repeated_parameter_is_refused_on_both_apis(client, path):
    response = client.get(path)
    assert response.status_code == 400 and "give it once" in response.get_json()["description"]


@pytest.mark.parametrize(("path", "value"), [("/api/v1/coverage/streets", "radius=0.5"),
                                             ("/api/v1/nearest?lon=113.826&lat=34.026&", "max_distance=0.5")])
def test_distances_above_zero_are_accepted_as_documented(client, path, value):
    separator = "" if path.endswith("&") else "?"
    assert client.get(f"{path}{separator}{value}").status_code == 200


# -- every error status in the one JSON shape ----------------------------------------------------------------------

def test_404_and_405_are_json_and_405_says_allow(client):
    missing = client.get("/api/v1/nowhere")
    assert missing.status_code == 404 and set(missing.get_json()) == {"code", "description"}
    wrong = client.post("/api/v1/nearest?lon=113.8&lat=34")
    assert wrong.status_code == 405 and set(wrong.get_json()) == {"code", "description"}
    assert "GET" in wrong.headers["Allow"]
    assert client.delete("/ogc/collections").headers["Allow"]


def test_an_over_long_address_and_over_large_headers_are_json_from_the_server(served):
    host, port = served.removeprefix("http://").split(":")
    for path, headers, status in (("/api/v1/points/search?q=" + "x" * 70_000, {}, 414),
                                  ("/api/v1/points/search?q=x", {f"X-Filler-{i}": "y" * 1000 for i in range(20)},
                                   431)):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        assert response.status == status and set(body) == {"code", "description"}, (status, body)


# -- the database away, busy, or slow ------------------------------------------------------------------------------

def test_the_database_away_is_a_503_with_retry_after_everywhere(settings):
    down = create_app(settings.replace(database_url=f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none"))
    client = down.test_client()
    for path in ("/api/v1/nearest?lon=113.826&lat=34.026", "/api/v1/coverage/streets", "/api/v1/layers/points",
                 "/api/v1/points/search?q=kiosk", "/api/v1/grids/at?lon=113.826&lat=34.026",
                 "/ogc/collections/points/items", "/ogc/collections", "/api/v1/points/1/service-area"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.get_json()["code"] == "DatabaseUnavailable" and int(response.headers["Retry-After"]) > 0
        assert "pw" not in response.get_data(as_text=True)
    page = client.get("/farmer")  # the pages are built without the database; their data requests say 503
    assert page.status_code == 200


def test_an_analysis_past_its_time_limit_is_stopped_with_503(settings, engine):
    # A walking service area searches the network in the database (coverage answers from the engine's memory, and
    # loading the demo city into it takes a few short statements).
    with engine.connect() as c:
        point = c.execute(sa.text("SELECT min(id) FROM point WHERE status = 'open'")).scalar_one()
    slow = create_app(settings.replace(timeout_analysis_s=0.05)).test_client()
    response = slow.get(f"/api/v1/points/{point}/service-area?radius=3000&mode=walk")
    assert response.status_code == 503
    assert response.get_json()["code"] == "Timeout" and int(response.headers["Retry-After"]) > 0
    quick = slow.get("/api/v1/nearest?lon=113.826&lat=34.026")  # other classes keep their own limits
    assert quick.status_code == 200


def test_with_every_analysis_slot_taken_an_analysis_is_refused_at_once_but_cached_answers_are_served(settings,
                                                                                                    engine):
    app = create_app(settings.replace(analysis_slots=2))
    client = app.test_client()
    cached = client.get("/api/v1/coverage/streets?radius=250&kind=kiosk")
    assert cached.status_code == 200
    with engine.connect() as other:
        with other.begin():
            for slot in range(2):  # another worker holds both slots
                assert other.execute(sa.text("SELECT pg_try_advisory_xact_lock(:n, :s)"),
                                     {"n": _SLOT_NAMESPACE, "s": slot}).scalar_one()
            started = time.perf_counter()
            busy = client.get("/api/v1/coverage/streets?radius=260&kind=kiosk")
            waited = time.perf_counter() - started
            assert busy.status_code == 503 and busy.get_json()["code"] == "Busy"
            assert int(busy.headers["Retry-After"]) > 0 and waited < 2.0
            assert client.get("/api/v1/coverage/streets?radius=250&kind=kiosk").status_code == 200  # kept answer
            assert client.get("/api/v1/nearest?lon=113.826&lat=34.026").status_code == 200  # cheap: no slot
        assert client.get("/api/v1/coverage/streets?radius=260&kind=kiosk").status_code == 200  # slots back


@pytest.fixture(scope="module")
def served_as_shipped(settings, app_database_url, engine):
    """``geoservice serve`` with the shipped limits (GEOSERVICE_ANALYSIS_SLOTS unset), as the app role."""
    with serving({"DATABASE_URL": settings.database_url, "GEOSERVICE_APP_DATABASE_URL": app_database_url,
                  "GEOSERVICE_ANALYSIS_SLOTS": ""},
                 log_name="serve-limits.log") as base:
        yield base


def test_eight_huge_analyses_do_not_hold_up_nearest(served_as_shipped):
    """8 whole-city coverage requests with a globe bbox (each a new question: no cache) while nearest is called 50
    times: every nearest answers in its normal time; the analyses finish or are refused at once."""
    served = served_as_shipped
    baseline = []
    for _ in range(10):
        started = time.perf_counter()
        assert get(served, "/api/v1/nearest?lon=113.826&lat=34.026&k=5")[0] == 200
        baseline.append(time.perf_counter() - started)
    with ThreadPoolExecutor(max_workers=8) as pool:
        heavy = [pool.submit(get, served, f"/api/v1/coverage/streets?mode=walk&radius={700 + i}&bbox={WHOLE_GLOBE}")
                 for i in range(8)]
        time.sleep(0.3)
        during = []
        for _ in range(50):
            started = time.perf_counter()
            assert get(served, "/api/v1/nearest?lon=113.826&lat=34.026&k=5")[0] == 200
            during.append(time.perf_counter() - started)
        outcomes = [f.result() for f in heavy]
    statuses = sorted(status for status, _, _ in outcomes)
    print(f"nearest alone: median {statistics.median(baseline) * 1000:.0f} ms; during 8 analyses: median "
          f"{statistics.median(during) * 1000:.0f} ms, max {max(during) * 1000:.0f} ms; analyses: {statuses}")
    assert set(statuses) <= {200, 503} and 200 in statuses
    assert all(body["code"] == "Busy" and "Retry-After" in headers
               for status, body, headers in outcomes if status == 503)
    assert max(during) < 3.0  # one nearest takes tens of ms; 3 s would mean it queued behind an analysis


# -- the database stops during a request mix, and comes back -------------------------------------------------------

class Forwarder:
    """A TCP forwarder to the database that can be cut and restored: the database 'goes away' for the app."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would leave the socket listening.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


def test_the_database_stopping_mid_mix_gives_only_503s_then_200s_again(settings, engine):
    url = engine.url
    forwarder = Forwarder((url.host, url.port))
    forwarder.start()
    proxied = url.set(port=forwarder.port).render_as_string(hide_password=False)
    client = create_app(settings.replace(database_url=proxied)).test_client()
    mix = ["/api/v1/nearest?lon=113.826&lat=34.026", "/api/v1/layers/grids?limit=5", "/ogc/collections/points/items",
           "/api/v1/points/search?q=岗亭", "/api/v1/grids/at?lon=113.826&lat=34.026"]
    assert all(client.get(path).status_code == 200 for path in mix)
    forwarder.stop()
    for path in mix * 2:
        response = client.get(path)
        assert response.status_code == 503, (path, response.get_data(as_text=True)[:300])
        assert response.get_json()["code"] == "DatabaseUnavailable" and response.headers["Retry-After"]
    forwarder.start()
    assert all(client.get(path).status_code == 200 for path in mix)  # no restart needed


def test_served_app_says_503_json_for_a_database_that_is_away():
    """gunicorn with a DATABASE_URL nobody answers: the API says 503 JSON with Retry-After, pages still render."""
    away = {"DATABASE_URL": f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none"}
    with serving(away, log_name="serve-away.log", ready="/farmer") as base:
        status, body, headers = get(base, "/api/v1/nearest?lon=113.826&lat=34.026")
        assert status == 503 and body["code"] == "DatabaseUnavailable" and headers["Retry-After"]
