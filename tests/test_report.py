"""The coverage report: its numbers are the API's, it renders in Chromium with its charts drawn, its PDF has the same
sections, and the command line and /planner/report answer bad input in one line / with a 400 naming it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser
from io import BytesIO

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from geoservice import coverage, report
from tests.conftest import DEMO_METRIC_CRS, ROOT, SCREENSHOTS

QUESTIONS = [
    {"radius_m": 500.0, "kinds": None, "mode": "straight", "district": None},
    {"radius_m": 300.0, "kinds": ["kiosk", "toilet"], "mode": "walk", "district": "411002"},
]


class ReportReader(HTMLParser):
    """What a report says, read back from its HTML: figures (data-figure → data-value), tables (data-table → rows
    of data-code with their data-field → data-value), section headings, chart boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.tables: dict[str, list[dict]] = {}
        self.headings: list[str] = []
        self.charts: list[str] = []
        self._table: str | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-figure" in a:
            self.figures[a["data-figure"]] = a.get("data-value", a.get("datetime"))
        if "data-table" in a:
            self._table = a["data-table"]
            self.tables[self._table] = []
        if tag == "tr" and "data-code" in a and self._table:
            self.tables[self._table].append({"code": a["data-code"]})
        if "data-field" in a and self._table:
            self.tables[self._table][-1][a["data-field"]] = a["data-value"]
        if "data-chart" in a:
            self.charts.append(a["data-chart"])
        if tag == "h2":
            self._heading = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        if tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)


def read_report(html: str) -> ReportReader:
    reader = ReportReader()
    reader.feed(html)
    return reader


def number(value: str) -> float | None:
    return None if value == "" else float(value)


@pytest.fixture(scope="module")
def reports(engine, settings):
    """The report's HTML for each question, made once (on the demo city, in the suite's database)."""
    made = {}
    with engine.connect() as conn:
        for i, q in enumerate(QUESTIONS):
            made[i] = report.coverage_report(conn, **q, metric_crs=DEMO_METRIC_CRS,
                                             options=report.ReportOptions.from_settings(settings))
    return made


def chart_specs(html: str) -> dict:
    """The charts' data the report's script draws."""
    return json.loads(re.search(r'<script id="report-charts" type="application/json">(.*?)</script>', html,
                                flags=re.S).group(1))


def api_query(q: dict) -> str:
    parts = [f"radius={q['radius_m']:g}", f"mode={q['mode']}"] + [f"kind={k}" for k in q["kinds"] or []]
    return "&".join(parts)


@pytest.mark.parametrize("index", range(len(QUESTIONS)))
def test_the_figures_are_the_apis(reports, client, index):
    q = QUESTIONS[index]
    seen = read_report(reports[index])
    district = f"&district={q['district']}" if q["district"] else ""
    summary = client.get(f"/api/v1/coverage/streets?{api_query(q)}{district}").get_json()["summary"]
    for name in ("total_km", "covered_km", "uncovered_km", "covered_pct"):
        assert number(seen.figures[name]) == summary[name], name
    assert number(seen.figures["radius_m"]) == q["radius_m"]
    assert seen.figures["mode"] == q["mode"]
    assert seen.figures["kinds"] == ",".join(q["kinds"] or report.KIND_CODES)
    assert seen.figures["district"] == (q["district"] or "")
    top = [{"code": s["name"], "uncovered_km": s["uncovered_km"]} for s in summary["uncovered_by_street"]]
    assert [{"code": r["code"], "uncovered_km": float(r["uncovered_km"])} for r in seen.tables["top_streets"]] == \
        top[:report.TOP_STREETS]

    grids = [g for g in client.get(f"/api/v1/coverage/grids?{api_query(q)}").get_json()["grids"]
             if q["district"] is None or g["code"].startswith(q["district"])]
    assert [(r["code"], number(r["covered_pct"]), float(r["street_km"]), float(r["covered_km"]))
            for r in seen.tables["grids"]] == \
        [(g["code"], g["covered_pct"], g["street_km"], g["covered_km"]) for g in grids[:report.WEAKEST_GRIDS]]
    with_streets = [g for g in grids if g["covered_pct"] is not None]
    assert int(seen.figures["grids_total"]) == len(grids)
    assert int(seen.figures["grids_uncovered"]) == sum(g["covered_pct"] == 0 for g in with_streets)
    assert int(seen.figures["grids_weak"]) == sum(g["covered_pct"] < 50 for g in with_streets)

    kinds = set(q["kinds"] or report.KIND_CODES)
    points = client.get("/api/v1/layers/points").get_json()["features"]
    assert int(seen.figures["points_counted"]) == sum(
        p["properties"]["status"] == "open" and p["properties"]["kind"] in kinds for p in points)


@pytest.mark.parametrize("index", range(len(QUESTIONS)))
def test_areas_curve_and_distances_are_the_apis(reports, client, index):
    q = QUESTIONS[index]
    html = reports[index]
    seen, charts = read_report(html), chart_specs(html)
    for level, key in report.AREA_LEVELS.items():
        areas = [a for a in client.get(f"/api/v1/coverage/areas?level={level}&{api_query(q)}").get_json()["areas"]
                 if q["district"] is None or a["code"].startswith(q["district"])]
        assert len(areas) > 1
        assert [{k: number(v) if k != "code" else v for k, v in row.items()} for row in seen.tables[key]] == \
            [{k: a[k] for k in ("code", "street_km", "covered_km", "uncovered_km", "covered_pct")} for a in areas]
        assert charts[key]["categories"] == [a["name"] for a in areas if a["covered_pct"] is not None]
    kinds = "".join(f"&kind={k}" for k in q["kinds"] or [])
    radii = ",".join(charts["curve"]["categories"])
    curve = client.get(f"/api/v1/coverage/curve?mode={q['mode']}{kinds}&radius={radii}").get_json()["curve"]
    assert charts["curve"]["series"][0]["values"] == [c["covered_pct"] for c in curve]
    assert charts["curve"]["series"][0]["mark"] == f"{q['radius_m']:g}" in charts["curve"]["categories"]
    if q["district"] is None:  # the curve is the city's: at the report's radius it is the headline figure
        at_radius = charts["curve"]["categories"].index(f"{q['radius_m']:g}")
        assert charts["curve"]["series"][0]["values"][at_radius] == number(seen.figures["covered_pct"])
    distances = client.get(f"/api/v1/coverage/distances?mode={q['mode']}{kinds}").get_json()
    assert charts["distances"]["series"][0]["values"] == [b["km"] for b in distances["bins"]] + \
        [distances["beyond_km"]]


@pytest.mark.parametrize("index", range(len(QUESTIONS)))
def test_the_suggested_sites_cover_what_coverage_says_once_planned(reports, conn, index):
    # Independent of the solver: each site, accepted as a planned point in turn, raises the covered share of the
    # report's area to the cumulative % the report prints for it.
    q = QUESTIONS[index]
    seen = read_report(reports[index])
    sites = seen.tables["sites"]
    assert [int(s["code"]) for s in sites] == list(range(1, report.DEFAULT_SITE_COUNT + 1))
    before = coverage.uncovered_streets(conn, **q, metric_crs=DEMO_METRIC_CRS)["summary"]
    gains = 0.0
    for site in sites:
        lon, lat = (float(v) for v in site["lonlat"].split(","))
        conn.execute(sa.text("INSERT INTO point (name, kind, status, geom) VALUES ('规划岗亭', 'kiosk', 'planned', "
                             "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"), {"lon": lon, "lat": lat})
        after = coverage.uncovered_streets(conn, **q, metric_crs=DEMO_METRIC_CRS, include_planned=True)
        assert after["summary"]["covered_pct"] == pytest.approx(float(site["covered_pct"]), abs=0.011)
        gains += float(site["gain_km"])
        assert after["summary"]["covered_km"] - before["covered_km"] == pytest.approx(gains, abs=0.002 * len(sites))
    assert float(seen.figures["sites_objective_km"]) == pytest.approx(gains, abs=1e-3)


def test_gaps_and_row_counts_are_the_apis(reports, client):
    seen = read_report(reports[0])
    gaps = client.get("/api/v1/coverage/grid-gaps").get_json()
    assert int(seen.figures["gaps"]) == gaps["summary"]["gaps"] > 0
    assert int(seen.figures["overlaps"]) == gaps["summary"]["overlaps"] > 0
    assert int(seen.figures["sliver_gaps"]) == gaps["summary"]["sliver_gaps"]
    assert [(r["type"], float(r["area_m2"])) for r in seen.tables["gaps"]] == \
        [(f["properties"]["type"], f["properties"]["area_m2"]) for f in gaps["features"]]
    counts = client.get("/healthz?counts=exact").get_json()["database"]["counts"]
    assert {r["code"]: int(r["rows"]) for r in seen.tables["row_counts"]} == counts


def test_maps_draw_every_uncovered_portion_and_every_gap(reports, client):
    html = reports[0]
    uncovered = client.get("/api/v1/coverage/streets?radius=500").get_json()
    gaps = client.get("/api/v1/coverage/grid-gaps").get_json()
    svgs = re.findall(r"<svg[^>]*class=\"report-map\".*?</svg>", html, flags=re.S)
    assert len(svgs) == 2
    drawn = re.search(r'class="map-uncovered" d="([^"]*)"', svgs[0]).group(1)
    # one M per line of every uncovered portion (multi-part portions have several)
    lines = sum(1 if f["geometry"]["type"] == "LineString" else len(f["geometry"]["coordinates"])
                for f in uncovered["features"])
    assert drawn.count("M") == lines > 0
    assert svgs[1].count('class="map-gap"') == gaps["summary"]["gaps"]
    assert svgs[1].count('class="map-overlap"') == gaps["summary"]["overlaps"]
    numbers = re.findall(r"<text[^>]*>(\d+)</text>", svgs[1])
    assert numbers == [str(i) for i in range(1, len(gaps["features"]) + 1)]


@pytest.mark.browser
def test_renders_in_chromium_with_every_chart_drawn(reports, browser):
    context = browser.new_context(viewport={"width": 800, "height": 1400}, locale="zh-CN")
    page = context.new_page()
    errors, requested = [], []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requested.append(request.url))
    page.set_content(reports[0])
    page.wait_for_selector("body[data-charts-ready]", state="attached")
    charts = read_report(reports[0]).charts
    assert charts and page.get_attribute("body", "data-charts-ready") == str(len(charts))
    # Every chart box holds a canvas with drawn (non-transparent) pixels.
    inked = page.evaluate("""() => Array.from(document.querySelectorAll('[data-chart]')).map(box => {
        const canvas = box.querySelector('canvas');
        if (!canvas || canvas.width === 0 || canvas.height === 0) return 0;
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) n++;
        return n;
    })""")
    assert len(inked) == len(charts) and all(n > 1000 for n in inked), inked
    assert page.locator("svg.report-map").count() == 2
    assert errors == [] and requested == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report.png"))
    context.close()


# Chromium writes each glyph's text as the lowest code point the font maps to it, and Noto CJK maps some CJK
# radicals (e.g. ⺠ U+2EA0) to the glyphs of the ideographs (民): the PDF shows 民, its text layer says ⺠. A
# character of the HTML is matched by itself or by one of those radicals.
def pdf_pattern(text: str) -> str:
    return "".join(f"[{re.escape(c)}\u2e80-\u2fdf]" if "\u4e00" <= c <= "\u9fff" else re.escape(c)
                   for c in re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)))


def test_the_pdf_has_the_same_sections_in_order(reports):
    pdf = report.print_pdf(reports[0])
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(BytesIO(pdf))
    text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", "".join(p.extract_text() for p in reader.pages)))
    seen = read_report(reports[0])
    assert len(seen.headings) == 8
    position = 0
    for heading in seen.headings:
        found = re.compile(pdf_pattern(heading)).search(text, position)
        assert found, heading
        position = found.end()
    for name in ("total_km", "covered_km", "uncovered_km"):
        assert f"{float(seen.figures[name]):,.1f}" in text
    assert len(reader.pages) >= len(seen.headings) - 1  # the sections after the first start on new pages


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geoservice", *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=600)


def test_cli_writes_the_report_with_the_apis_numbers(settings, client, tmp_path):
    out = tmp_path / "report.html"
    result = run_cli("report", "coverage", "--radius", "800", "--kind", "kiosk", "--kind", "vendor_point", "--out",
                     str(out), env={"DATABASE_URL": settings.database_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"coverage report written to {out}") and result.stdout.count("\n") == 1
    seen = read_report(out.read_text(encoding="utf-8"))
    summary = client.get("/api/v1/coverage/streets?radius=800&kind=kiosk&kind=vendor_point").get_json()["summary"]
    assert number(seen.figures["covered_pct"]) == summary["covered_pct"]
    assert number(seen.figures["uncovered_km"]) == summary["uncovered_km"]
    assert not list(tmp_path.glob(".*partial"))


def test_cli_prints_a_pdf(settings, engine, tmp_path):
    out = tmp_path / "report.pdf"
    result = run_cli("report", "coverage", "--sites", "0", "--out", str(out),
                     env={"DATABASE_URL": settings.database_url})
    assert result.returncode == 0, result.stderr
    text = "".join(page.extract_text() for page in PdfReader(out).pages)
    assert re.search(pdf_pattern("便民点覆盖情况报告"), text)
    assert re.search(pdf_pattern("七、数据说明"), text)  # no siting section: the data are the seventh


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--radius", "-5"], 1, "radius must be"),
    (["--radius", "20000"], 1, "radius must be"),
    (["--kind", "bus_stop"], 1, "unknown kind 'bus_stop'; allowed kinds: kiosk"),
    (["--mode", "fly"], 1, "mode must be one of straight, walk"),
    (["--district", "41100"], 1, "district must be a 6-digit district code"),
    (["--district", "999999"], 1, "there is no district with code 999999"),
    (["--lang", "fr"], 1, "lang must be one of zh, en"),
    (["--sites", "1000"], 1, "sites must be a whole number from 0"),
    (["--out", "{tmp}/report.docx"], 1, "--out must end in .html or .pdf"),
    (["--out", "{tmp}/no/such/folder/report.html"], 1, "does not exist"),
    (["--radius", "far"], 2, "--radius"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(settings, engine, tmp_path, args, code, says):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "report.html")]
    result = run_cli("report", "coverage", *args, env={"DATABASE_URL": settings.database_url})
    assert result.returncode == code
    assert says in result.stderr
    if code == 1:
        assert result.stderr.startswith("geoservice: ") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_help():
    result = run_cli("report", "coverage", "--help", env={})
    assert result.returncode == 0 and "--out" in result.stdout and "--radius" in result.stdout


def test_web_report_is_an_html_download_with_the_apis_numbers(client):
    response = client.get("/planner/report?radius=300&kind=kiosk,toilet&mode=walk&district=411002")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="coverage-report-300m-walk-411002')
    seen = read_report(response.get_data(as_text=True))
    summary = client.get("/api/v1/coverage/streets?radius=300&kind=kiosk&kind=toilet&mode=walk&district=411002"
                         ).get_json()["summary"]
    for name in ("total_km", "covered_km", "covered_pct"):
        assert number(seen.figures[name]) == summary[name]


def test_web_report_as_pdf_and_in_english(client):
    response = client.get("/planner/report?f=pdf&lang=en&sites=0")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].endswith('.pdf"')
    first_page = PdfReader(BytesIO(response.get_data())).pages[0].extract_text()
    text = " ".join(unicodedata.normalize("NFKC", first_page).split())
    assert "Convenience-point coverage report" in text and "Headline figures" in text, text


@pytest.mark.parametrize(("query", "says"), [
    ("radius=0", "radius"), ("radius=abc", "radius"), ("kind=bus_stop", "kind"), ("mode=fly", "mode"),
    ("district=4110", "district"), ("f=docx", "f"), ("lang=fr", "lang"), ("colour=red", "colour"),
    ("radius=500&radius=300", "radius"), ("sites=-1", "sites"), ("sites=many", "sites"), ("planned=maybe", "planned"),
])
def test_web_report_bad_input_is_a_400_naming_it(client, query, says):
    response = client.get(f"/planner/report?{query}")
    assert response.status_code == 400
    assert says in response.get_data(as_text=True)


def test_web_report_unknown_district_is_a_404(client):
    assert client.get("/planner/report?district=999999").status_code == 404


def test_cli_shows_a_progress_bar_at_a_terminal(settings, engine, tmp_path):
    # stderr is a terminal (a pseudo-terminal here): click draws a bar per step, ending at 100 %.
    import pty

    leader, follower = pty.openpty()
    out = tmp_path / "report.html"
    proc = subprocess.Popen([sys.executable, "-m", "geoservice", "report", "coverage", "--sites", "0", "--out",
                             str(out)], cwd=ROOT, env={**os.environ, "DATABASE_URL": settings.database_url},
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait(timeout=600) == 0
    os.close(leader)
    text = shown.decode("utf-8", "replace")
    for stage in ("uncovered streets", "coverage curve", "grid gaps", "maps", "done"):
        assert stage in text, text
    assert "100%" in text
    assert out.exists() and proc.stdout.read().startswith("coverage report written to")
