"""The coverage report for a bureau meeting: one self-contained HTML file (or its PDF) with the numbers of the day.

``coverage_report`` asks the core for every number — uncovered streets (``coverage.uncovered_streets``), coverage
per unit grid (``coverage.grid_coverage``), grid gaps and overlaps (``grids.grid_gaps``), row counts
(``health.row_counts``) and the layers the maps are drawn from (``features.layer_collection``) — and never
computes a coverage figure of its own, so the report says what the API says. ``render_report`` turns those numbers
into HTML from ``web/templates/report_coverage.html``:

- everything inline: the CSS, the data, the ECharts file (``static/vendor/echarts/echarts.min.js``, installed by
  ``make assets``) and the maps. The file opens offline, from a mail attachment or a USB stick, and requests
  nothing from any host;
- the maps are SVG drawn here, on the server, in the city's metric CRS (so a kilometre is as long east-west as
  north-south in any city): no tile server and no Leaflet;
- every figure carries its exact value in a ``data-value`` attribute beside the rounded text a reader sees, so a
  test (or a script) can read the numbers back and compare them with the API's;
- zh-CN first (the bureau's language), English on request; labels the planner page already has come from
  ``geoservice.web.i18n``, kind labels from ``geoservice.vocab``.

``print_pdf`` prints the HTML with the headless Chromium the tests drive (Playwright, Debian's ``/usr/bin/chromium``,
never a downloaded browser): the charts are drawn by the same ECharts code as on screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pyproj
import shapely
from markupsafe import Markup
from sqlalchemy.engine import Connection

from geoservice import coverage, features, grids, health, siting
from geoservice.config import Settings
from geoservice.errors import GeoserviceError, InvalidParameter
from geoservice.query import check_kinds, check_mode, check_radius
from geoservice.vocab import KIND_CODES, label
from geoservice.web.i18n import catalogue

ROOT = Path(__file__).resolve().parent
TEMPLATES = ROOT / "web" / "templates"
TEMPLATE = "report_coverage.html"
ECHARTS_JS = ROOT.parent / "static" / "vendor" / "echarts" / "echarts.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")
PDF_TIMEOUT_S = 120
"""How long the browser may take to draw the charts and print (the demo city prints in a few seconds)."""
LANGS = ("zh", "en")
FORMATS = ("html", "pdf")
WEAKEST_GRIDS = 15
"""The grid table lists the weakest grids only; the full table is the planner page's export."""
TOP_STREETS = 15
MAP_WIDTH = 1000
"""SVG user units across a map; heights follow the area's shape."""
DEFAULT_SITE_COUNT = 5
"""Suggested new sites in a report unless asked otherwise: what a meeting can discuss one by one."""
MARK_OFFSET = 28
"""SVG units between a gap or overlap and its number."""
MAX_MAP_STREETS = 100_000
"""Background streets drawn on the uncovered-streets map (a larger city's map draws the first ones by key)."""

# The report's own words; the rest come from the planner page's catalogue (geoservice.web.i18n).
MESSAGES: dict[str, dict[str, str]] = {
    "title": {"zh": "便民点覆盖情况报告", "en": "Convenience-point coverage report"},
    "subtitle": {"zh": "城管局会议材料", "en": "For the urban-management bureau's meeting"},
    "generated_at": {"zh": "生成时间", "en": "Generated"},
    "question": {"zh": "统计口径", "en": "The question"},
    "radius": {"zh": "覆盖半径", "en": "Radius"},
    "kinds": {"zh": "计入的便民点类型", "en": "Point kinds that count"},
    "all_kinds": {"zh": "全部类型", "en": "All kinds"},
    "mode": {"zh": "距离方式", "en": "Distance"},
    "area": {"zh": "范围", "en": "Area"},
    "whole_city": {"zh": "全市", "en": "Whole city"},
    "metres": {"zh": "米", "en": "m"},
    "section_headline": {"zh": "总体情况", "en": "Headline figures"},
    "section_uncovered": {"zh": "未覆盖街道", "en": "Uncovered streets"},
    "section_grids": {"zh": "覆盖最弱的网格", "en": "Weakest grids"},
    "section_gaps": {"zh": "网格空白与重叠", "en": "Grid gaps and overlaps"},
    "section_subdistricts": {"zh": "各街道（乡镇）覆盖情况", "en": "Coverage per subdistrict"},
    "section_communities": {"zh": "各社区（村）覆盖情况", "en": "Coverage per community"},
    "section_sites": {"zh": "建议新增点位", "en": "Suggested new sites"},
    "chart_curve": {"zh": "覆盖率随半径的变化", "en": "Covered % against the radius"},
    "chart_distances": {"zh": "街道到最近便民点的距离分布", "en": "Street length by distance to the nearest point"},
    "chart_subdistricts": {"zh": "各街道（乡镇）覆盖率", "en": "Covered % per subdistrict"},
    "chart_communities": {"zh": "各社区（村）覆盖率", "en": "Covered % per community"},
    "chart_sites": {"zh": "每个新增点位新增的覆盖长度及累计覆盖率",
                    "en": "What each new site adds, and the covered % after it"},
    "city_wide": {"zh": "（全市）", "en": " (whole city)"},
    "distance_m": {"zh": "距离（米）", "en": "Distance (m)"},
    "radius_m_axis": {"zh": "半径（米）", "en": "Radius (m)"},
    "beyond": {"zh": "超过 {m} 米", "en": "over {m} m"},
    "report_radius": {"zh": "本报告半径", "en": "this report"},
    "col_rank": {"zh": "序号", "en": "No."},
    "col_lonlat": {"zh": "经度, 纬度", "en": "Lon, lat"},
    "col_gain_km": {"zh": "新增覆盖（公里）", "en": "Newly covered (km)"},
    "col_after_pct": {"zh": "累计覆盖率 %", "en": "Covered % after"},
    "col_source": {"zh": "候选位置", "en": "Candidate"},
    "source_intersection": {"zh": "路口", "en": "Intersection"},
    "source_midpoint": {"zh": "路段中点", "en": "Street midpoint"},
    "source_uploaded": {"zh": "上传", "en": "Uploaded"},
    "sites_summary": {"zh": "在 {candidates} 个候选位置中选出 {n} 个，新增覆盖 {km} 公里，"
                             "覆盖率由 {before}% 提高到 {after}%。"
                             "求解方法：{method}（{optimality}），用时 {seconds} 秒。",
                      "en": "{n} of {candidates} candidate sites, newly covering {km} km: covered {before} % → "
                            "{after} %. Method: {method} ({optimality}), {seconds} s."},
    "optimal": {"zh": "已证明最优", "en": "proven optimal"},
    "gap": {"zh": "最优性差距 {gap}%", "en": "optimality gap {gap} %"},
    "no_sites": {"zh": "没有能新增覆盖的候选位置", "en": "No candidate site covers anything new"},
    "sites_note": {"zh": "候选位置为路口和路段中点，不含主干道（疏导点设在支路）；地图上以绿色编号标出。",
                   "en": "Candidates are street intersections and midpoints off the arterials (vendor points stand on "
                         "side streets); green numbers on the map."},
    "what_if": {"zh": "含规划点（假设规划点已开放）", "en": "Planned points counted as open (what if)"},
    "section_data": {"zh": "数据说明", "en": "The data"},
    "points_counted": {"zh": "计入的便民点（开放）", "en": "Points that count (open)"},
    "grids_total": {"zh": "网格数", "en": "Grids"},
    "grids_uncovered": {"zh": "街道完全未覆盖的网格", "en": "Grids with no street covered"},
    "grids_weak": {"zh": "覆盖率低于 50% 的网格", "en": "Grids under 50 % covered"},
    "map_uncovered": {"zh": "未覆盖街段（红色）与计入的便民点（蓝色）", "en": "Uncovered street portions (red) and "
                      "the points that count (blue)"},
    "map_sites": {"zh": "建议新增点位（绿色编号）", "en": "suggested new sites (green numbers)"},
    "map_gaps": {"zh": "网格空白（红色）与重叠（紫色），编号见下表", "en": "Grid gaps (red) and overlaps (purple), "
                 "numbered as in the table"},
    "col_area_code": {"zh": "编码", "en": "Code"},
    "col_street": {"zh": "街道", "en": "Street"},
    "col_number": {"zh": "编号", "en": "No."},
    "col_type": {"zh": "类型", "en": "Type"},
    "col_area_m2": {"zh": "面积（平方米）", "en": "Area (m²)"},
    "col_where": {"zh": "所在区域 / 涉及网格", "en": "Area / grids involved"},
    "col_table": {"zh": "数据表", "en": "Table"},
    "col_rows": {"zh": "行数", "en": "Rows"},
    "grid_bands": {"zh": "各覆盖率区间的网格数", "en": "Grids by covered %"},
    "no_gaps": {"zh": "没有网格空白或重叠", "en": "No grid gaps or overlaps"},
    "no_uncovered": {"zh": "所有街道都已覆盖", "en": "Every street is covered"},
    "metric_crs": {"zh": "投影坐标系（计算长度与距离）", "en": "Metric CRS (lengths and distances)"},
    "maps_note": {"zh": "地图为服务器按投影坐标绘制的示意图，不含底图。",
                  "en": "The maps are drawn by the server in the metric CRS, without a basemap."},
    "streets_truncated": {"zh": "街道太多，底图只画出前 {n} 条", "en": "Too many streets: the first {n} are drawn"},
    "table_district": {"zh": "区/县", "en": "Districts"},
    "table_subdistrict": {"zh": "街道/乡镇", "en": "Subdistricts"},
    "table_community": {"zh": "社区/村", "en": "Communities"},
    "table_grid": {"zh": "单元网格", "en": "Unit grids"},
    "table_squad": {"zh": "执法中队", "en": "Squads"},
    "table_street": {"zh": "街道段", "en": "Street segments"},
    "table_point": {"zh": "便民点", "en": "Convenience points"},
}


@dataclass(frozen=True)
class ReportOptions:
    """How the report is made, beyond the coverage question itself.

    Build it with :meth:`from_settings`: the sliver area and the siting limits belong to the settings.

    Attributes:
        sliver_m2: grid gaps and overlaps smaller than this are counted, not listed (setting ``sliver_area_m2``).
        siting_time_limit_s: wall time of the siting solver (setting ``siting_time_limit_s``).
        siting_max_candidates: largest instance solved exactly (setting ``siting_max_candidates``).
        lang: ``zh`` (the bureau's language) or ``en``.
        site_count: how many new sites to suggest (0: no siting section).
        include_planned: what if: count ``planned`` points as if open, in every figure.
        generated_at: the time printed on the report (the city's local time; now when None).
    """

    sliver_m2: float
    siting_time_limit_s: float
    siting_max_candidates: int | None
    lang: str = "zh"
    site_count: int = DEFAULT_SITE_COUNT
    include_planned: bool = False
    generated_at: datetime | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> ReportOptions:
        """The options with the settings' sliver area and siting limits, and ``options`` on top."""
        return cls(sliver_m2=settings.sliver_area_m2, siting_time_limit_s=settings.siting_time_limit_s,
                   siting_max_candidates=settings.siting_max_candidates, **options)


Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called before each step and once at the end (done == total)."""


@dataclass
class _Steps:
    """Counts the report's steps for the progress callback."""

    progress: Progress | None
    total: int
    done: int = field(default=0)

    def step(self, stage: str) -> None:
        if self.progress is not None:
            self.progress(stage, self.done, self.total)
        self.done += 1

    def finish(self, stage: str) -> None:
        if self.progress is not None:
            self.progress(stage, self.total, self.total)


AREA_LEVELS = {"subdistrict": "subdistricts", "community": "communities"}
"""The area levels of the report's tables, and their keys in the report's data."""
_STEP_COUNT = 9
"""Steps of a report without siting (siting adds one)."""


def check_output(path: Path) -> str:
    """The format a report file is written in, from its name (``.html`` or ``.pdf``).

    Checked before the report is made, so that a wrong name costs nothing.

    Raises:
        InvalidParameter: another extension, or a folder that does not exist.
    """
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InvalidParameter(f"--out must end in .html or .pdf, got {path.name!r}")
    if not path.parent.is_dir():
        raise InvalidParameter(f"--out: the folder {str(path.parent)!r} does not exist")
    return fmt


def write_output(path: Path, body: bytes) -> None:
    """Write the report file whole or not at all (a half-written report is never left under its name).

    Raises:
        InvalidParameter: the file cannot be written there (the reason is named).
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(body)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidParameter(f"--out: cannot write {str(path)!r}: {exc.strerror or exc}") from None


def check_options(options: ReportOptions) -> ReportOptions:
    """The options if they are allowed.

    Raises:
        InvalidParameter: an unknown language, a negative sliver area or a site count out of range.
    """
    if options.lang not in LANGS:
        raise InvalidParameter(f"lang must be one of {', '.join(LANGS)}; got {options.lang!r}")
    if not options.sliver_m2 >= 0:
        raise InvalidParameter(f"sliver area must be 0 or more square metres, got {options.sliver_m2}")
    if not (isinstance(options.site_count, int) and 0 <= options.site_count <= siting.MAX_COUNT):
        raise InvalidParameter(f"sites must be a whole number from 0 (no siting) to {siting.MAX_COUNT}, "
                               f"got {options.site_count!r}")
    return options


def report_data(conn: Connection, *, radius_m: float | None, kinds: Sequence[str] | None, mode: str,
                district: str | None, metric_crs: str, options: ReportOptions,
                progress: Progress | None = None) -> dict[str, Any]:
    """Every number and map of the coverage report, from the core functions.

    Args:
        conn: database connection.
        radius_m: coverage radius in metres (None: the default for ``kinds``, as everywhere).
        kinds: point kinds that count (None or empty: all).
        mode: ``straight`` or ``walk``.
        district: 6-digit district code: streets, areas, grids, gaps and sites of that district only (None: the
            whole city). The curve and the distance distribution are the whole city's.
        metric_crs: the city's projected CRS, from the settings.
        options: see :class:`ReportOptions`.
        progress: called before each step (see :data:`Progress`).

    Returns:
        A dict: ``question``, ``generated_at``, ``metric_crs``, ``row_counts``, ``summary`` (as
        ``uncovered_streets``), ``points_counted``, ``grids`` (as ``grid_coverage``), ``subdistricts`` and
        ``communities`` (as ``coverage_by_area``), ``curve`` (as ``coverage_curve``, at the usual radii and the
        report's), ``distances`` (as ``distance_distribution``), ``gaps`` (as ``grid_gaps``), ``sites`` (as
        ``siting.suggest_sites``, or None with no sites asked for), ``maps`` (SVG markup) and ``streets_truncated``.

    Raises:
        InvalidParameter: a bad radius, kind, mode, district code or option.
        NotFound: no district with that code.
    """
    options = check_options(options)
    question = {"radius_m": check_radius(radius_m, kinds), "kinds": check_kinds(kinds), "mode": check_mode(mode),
                "metric_crs": metric_crs, "include_planned": options.include_planned}
    steps = _Steps(progress, _STEP_COUNT + (options.site_count > 0))
    steps.step("uncovered streets")
    streets = coverage.uncovered_streets(conn, **question, district=district)
    in_district = (lambda code: True) if district is None else (lambda code: code.startswith(district))
    numbers: dict[str, Any] = {"summary": streets["summary"]}
    steps.step("grid coverage")
    numbers["grids"] = [g for g in coverage.grid_coverage(conn, **question) if in_district(g["code"])]
    for level, key in AREA_LEVELS.items():
        steps.step(f"{level} coverage")
        numbers[key] = [a for a in coverage.coverage_by_area(conn, level=level, **question) if in_district(a["code"])]
    radius, rest = question["radius_m"], {k: v for k, v in question.items() if k != "radius_m"}
    steps.step("coverage curve")
    numbers["curve"] = coverage.coverage_curve(conn, **rest, radii=_curve_radii(radius))
    steps.step("distance distribution")
    numbers["distances"] = coverage.distance_distribution(conn, **rest)
    steps.step("grid gaps")
    numbers["gaps"] = grids.grid_gaps(conn, district=district, sliver_m2=options.sliver_m2)
    numbers["sites"] = None
    if options.site_count:
        steps.step("siting")
        numbers["sites"] = siting.suggest_sites(
            conn, **question, count=options.site_count, district=district, time_limit_s=options.siting_time_limit_s,
            max_candidates=options.siting_max_candidates)
    steps.step("maps")
    layers = _map_layers(conn, district, include_planned=options.include_planned)
    points = [f for f in layers["points"]["features"] if f["properties"]["kind"] in question["kinds"] and
              f["properties"]["status"] in (("open", "planned") if options.include_planned else ("open",))]
    maps = _draw_maps(layers, streets, numbers, points, metric_crs)
    steps.step("row counts")
    counts = health.row_counts(conn)
    steps.finish("done")
    generated_at = options.generated_at or datetime.now().astimezone()
    return {
        "question": {"radius_m": radius, "kinds": list(question["kinds"]), "mode": mode, "district": district,
                     "district_name": _district_name(layers, district), "lang": options.lang,
                     "include_planned": options.include_planned},
        "generated_at": generated_at.isoformat(timespec="seconds"), "metric_crs": metric_crs, "row_counts": counts,
        **numbers, "points_counted": len(points), "maps": maps,
        "streets_truncated": layers["streets"].get("truncated", False),
    }


def _curve_radii(radius: float) -> list[float]:
    """The curve's radii: the usual ones and the report's own, so the curve passes through the headline figure."""
    radii = sorted({*coverage.CURVE_RADII, radius})
    return radii if len(radii) <= coverage.MAX_CURVE_RADII else [*coverage.CURVE_RADII]


def coverage_report(conn: Connection, *, radius_m: float | None, kinds: Sequence[str] | None, mode: str,
                    district: str | None, metric_crs: str, options: ReportOptions,
                    progress: Progress | None = None) -> str:
    """The coverage report as one self-contained HTML document (see the module docstring).

    Args and Raises: as :func:`report_data`; additionally ``ReportUnavailable`` when ECharts is not installed.
    """
    echarts = echarts_source()  # before the long part: a missing file is said at once
    data = report_data(conn, radius_m=radius_m, kinds=kinds, mode=mode, district=district, metric_crs=metric_crs,
                       options=options, progress=progress)
    return render_report(data, echarts_js=echarts)


class ReportUnavailable(GeoserviceError):
    """The report cannot be made on this installation (a missing asset or browser); the message says what to do."""

    status = 503
    code = "ReportUnavailable"


def echarts_source() -> str:
    """The ECharts file to inline.

    Raises:
        ReportUnavailable: the front-end assets are not installed.
    """
    try:
        source = ECHARTS_JS.read_text(encoding="utf-8")
    except OSError:
        raise ReportUnavailable("ECharts is not installed (static/vendor/echarts/echarts.min.js): run `make assets`"
                                ) from None
    # A "</script" inside the inlined code would end the script element early (the file has none today).
    return source.replace("</script", "<\\/script")


# -- rendering ----------------------------------------------------------------------------------------------------

def messages(lang: str) -> dict[str, str]:
    """The report's words in ``lang``: the planner page's catalogue with the report's own on top."""
    return {**catalogue("planner")[lang], **{key: text[lang] for key, text in MESSAGES.items()}}


def render_report(data: dict[str, Any], *, echarts_js: str) -> str:
    """The HTML of a report from :func:`report_data`'s answer, with ``echarts_js`` inlined."""
    question = data["question"]
    lang = question["lang"]
    t = messages(lang)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    separator = "、" if lang == "zh" else ", "
    return env.get_template(TEMPLATE).render(
        t=t, lang=lang, html_lang="zh-CN" if lang == "zh" else "en", data=data, question=question,
        headings=_headings(data, t, lang), kind_labels=separator.join(label(k, lang) for k in question["kinds"]),
        all_kinds=tuple(question["kinds"]) == KIND_CODES, mode_label=t[f"mode_{question['mode']}"],
        weakest=data["grids"][:WEAKEST_GRIDS], top_streets=data["summary"]["uncovered_by_street"][:TOP_STREETS],
        grid_stats=_grid_stats(data["grids"]), gap_rows=_gap_rows(data["gaps"]),
        area_sections=[{"id": key, "rows": data[key], "caption": t[f"table_{level}"]}
                       for level, key in AREA_LEVELS.items()],
        sites_line=_sites_line(data["sites"], t), separator=separator,
        row_counts=[(name, t.get(f"table_{name}", name), n) for name, n in data["row_counts"].items()],
        maps={name: Markup(svg) for name, svg in data["maps"].items()}, max_map_streets=MAX_MAP_STREETS,
        charts=_charts(data, t), echarts_js=Markup(echarts_js))


ZH_NUMERALS = "一二三四五六七八九十"


def _headings(data: dict[str, Any], t: dict[str, str], lang: str) -> dict[str, str]:
    """The numbered section headings, by section id (the sites section only when sites were asked for)."""
    ids = ["headline", *AREA_LEVELS.values(), "uncovered", "grids", "gaps", *(["sites"] if data["sites"] else []),
           "data"]
    return {sid: (f"{ZH_NUMERALS[n]}、" if lang == "zh" else f"{n + 1}. ") + t[f"section_{sid}"]
            for n, sid in enumerate(ids)}


def _sites_line(sites: dict | None, t: dict[str, str]) -> str | None:
    """One sentence on the siting answer: how many, what they add, how it was solved."""
    if not sites or not sites["features"]:
        return None
    summary = sites["summary"]
    optimality = t["optimal"] if summary["optimal"] else t["gap"].replace("{gap}", _number(
        None if summary["gap"] is None else 100 * summary["gap"], 2))
    return t["sites_summary"].format(
        n=len(sites["features"]), candidates=f"{summary['candidates']:,}", km=_number(summary["objective_km"], 2),
        before=_number(summary["covered_pct"]), after=_number(summary["covered_pct_after"]),
        method=summary["method"].upper(), optimality=optimality, seconds=_number(summary["seconds"], 1))


# -- charts: specs the template's script draws with ECharts ------------------------------------------------------

BLUE, RED, GREEN = "#1f5fbf", "#d7301f", "#1a9850"
COVERAGE_BANDS = ((0, 0), (0, 25), (25, 50), (50, 75), (75, 100), (100, 100))
"""Grid covered-% bands of the histogram: exactly 0, (0, 25), [25, 50), [50, 75), [75, 100), exactly 100."""


def _chart(chart_id: str, section: str, title: str, categories: list, series: list[dict], axes: list[dict],
           **options: Any) -> dict:
    """A chart spec; ``options``: horizontal (bars), category_name, height (px), mark_label."""
    return {"id": chart_id, "section": section, "title": title, "categories": categories, "series": series,
            "axes": axes, "horizontal": False, "category_name": "", "height": 320, **options}


def _charts(data: dict[str, Any], t: dict[str, str]) -> dict[str, dict]:
    """Every chart of the report, by id."""
    charts = [_curve_chart(data, t), _distance_chart(data, t),
              *(_area_chart(data, t, key) for key in AREA_LEVELS.values()),
              _top_streets_chart(data, t), _grid_band_chart(data, t), _sites_chart(data, t)]
    return {c["id"]: c for c in charts if c is not None}


def _city_wide(data: dict[str, Any], t: dict[str, str]) -> str:
    return t["city_wide"] if data["question"]["district"] else ""


def _curve_chart(data: dict[str, Any], t: dict[str, str]) -> dict:
    curve = data["curve"]["curve"]
    return _chart("curve", "headline", t["chart_curve"] + _city_wide(data, t), [f"{c['radius_m']:g}" for c in curve],
                  [{"type": "line", "name": t["covered_pct"], "values": [c["covered_pct"] for c in curve],
                    "colour": BLUE, "mark": f"{data['question']['radius_m']:g}"}],
                  [{"name": "%", "max": 100}], category_name=t["radius_m_axis"], mark_label=t["report_radius"])


def _distance_chart(data: dict[str, Any], t: dict[str, str]) -> dict:
    distances = data["distances"]
    bins = distances["bins"]
    categories = [f"{b['from_m']:g}–{b['to_m']:g}" for b in bins]
    categories.append(t["beyond"].replace("{m}", f"{bins[-1]['to_m']:g}") if bins else "")
    return _chart("distances", "headline", t["chart_distances"] + _city_wide(data, t), categories,
                  [{"type": "bar", "name": t["km"], "values": [b["km"] for b in bins] + [distances["beyond_km"]],
                    "colour": BLUE}],
                  [{"name": t["km"]}], category_name=t["distance_m"])


def _area_chart(data: dict[str, Any], t: dict[str, str], key: str) -> dict | None:
    areas = [a for a in data[key] if a["covered_pct"] is not None]
    if not areas:
        return None
    return _chart(key, key, t[f"chart_{key}"], [a["name"] for a in areas],
                  [{"type": "bar", "name": t["covered_pct"], "values": [a["covered_pct"] for a in areas],
                    "colour": BLUE, "labels": True}],
                  [{"name": "%", "max": 100}], horizontal=True, height=50 + 22 * len(areas))


def _sites_chart(data: dict[str, Any], t: dict[str, str]) -> dict | None:
    sites = (data["sites"] or {"features": []})["features"]
    if not sites:
        return None
    props = [f["properties"] for f in sites]
    return _chart("sites", "sites", t["chart_sites"], [str(p["rank"]) for p in props],
                  [{"type": "bar", "name": t["col_gain_km"], "values": [p["gain_km"] for p in props],
                    "colour": GREEN, "labels": True},
                   {"type": "line", "name": t["col_after_pct"], "values": [p["covered_pct"] for p in props],
                    "colour": BLUE, "axis": 1}],
                  [{"name": t["km"]}, {"name": "%", "max": 100}], category_name=t["col_rank"])


def _top_streets_chart(data: dict[str, Any], t: dict[str, str]) -> dict | None:
    top = data["summary"]["uncovered_by_street"][:TOP_STREETS]
    if not top:
        return None
    return _chart("top_streets", "uncovered", t["top_streets"], [s["name"] or "—" for s in top],
                  [{"type": "bar", "name": t["uncovered_km"], "values": [s["uncovered_km"] for s in top],
                    "colour": RED, "labels": True}],
                  [{"name": t["km"]}], horizontal=True, height=40 + 22 * len(top))


def _band_label(low: float, high: float) -> str:
    return f"{low:g}%" if low == high else f"{low:g}–{high:g}%"


def _grid_band_chart(data: dict[str, Any], t: dict[str, str]) -> dict:
    """How many grids in each covered-% band (grids without streets apart)."""
    counts = []
    for low, high in COVERAGE_BANDS:
        counts.append(sum(1 for g in data["grids"] if g["covered_pct"] is not None and (
            g["covered_pct"] == low if low == high else
            low < g["covered_pct"] < high if low == 0 else
            low <= g["covered_pct"] < high)))
    counts.append(sum(1 for g in data["grids"] if g["covered_pct"] is None))
    categories = [_band_label(low, high) for low, high in COVERAGE_BANDS] + [t["legend_no_streets"]]
    return _chart("grid_bands", "grids", t["grid_bands"], categories,
                  [{"type": "bar", "name": t["grids_total"], "values": counts, "colour": BLUE, "labels": True}],
                  [{"name": t["grids_total"]}], category_name=t["col_covered_pct"], height=280)


def _number(value: float | None, digits: int = 1) -> str:
    """A figure as a reader sees it: grouped thousands, ``digits`` decimals; a dash for none."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _grid_stats(grid_rows: list[dict]) -> dict[str, int]:
    with_streets = [g for g in grid_rows if g["covered_pct"] is not None]
    return {"total": len(grid_rows), "uncovered": sum(1 for g in with_streets if g["covered_pct"] == 0),
            "weak": sum(1 for g in with_streets if g["covered_pct"] < 50)}


def _gap_rows(gaps: dict) -> list[dict]:
    """The listed gaps and overlaps, numbered as on the map."""
    return [{"number": i, **f["properties"]} for i, f in enumerate(gaps["features"], start=1)]


def _district_name(layers: dict, district: str | None) -> str | None:
    if district is None:
        return None
    return next((f["properties"]["name"] for f in layers["districts"]["features"]
                 if f["properties"]["code"] == district), None)


# -- maps -----------------------------------------------------------------------------------------------------------

def _map_layers(conn: Connection, district: str | None, *, include_planned: bool) -> dict[str, dict]:
    """The layers the maps are drawn from: district outlines, grids, streets and points (of the district's box).

    Planned points are among the points only for a what-if report (they are hidden from the public's layers).
    """
    districts = features.layer_collection(conn, "districts")
    if district is not None:
        districts = {**districts, "features": [f for f in districts["features"]
                                               if f["properties"]["code"] == district]}
    bbox = None
    if districts["features"]:
        outline = shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in districts["features"]])
        bbox = tuple(float(v) for v in outline.bounds)
    return {"districts": districts,
            "grids": features.layer_collection(conn, "grids", bbox=bbox),
            "streets": features.layer_collection(conn, "streets", bbox=bbox, limit=MAX_MAP_STREETS),
            "points": features.layer_collection(conn, "points", bbox=bbox, show_hidden=include_planned)}


class _Canvas:
    """Lon/lat → SVG user units through the metric CRS: north up, ``MAP_WIDTH`` across the area's box."""

    MARGIN = 10.0

    def __init__(self, outline_features: list[dict], fallback: list[dict], metric_crs: str) -> None:
        self._to_metric = pyproj.Transformer.from_crs("EPSG:4326", metric_crs, always_xy=True)
        geoms = [self.project(shapely.geometry.shape(f["geometry"])) for f in (outline_features or fallback)]
        minx, miny, maxx, maxy = shapely.total_bounds(np.array(geoms, dtype=object)) if geoms else (0, 0, 1, 1)
        span = max(maxx - minx, maxy - miny, 1.0)
        self.scale = (MAP_WIDTH - 2 * self.MARGIN) / max(maxx - minx, span * 0.2)
        self.minx, self.maxy = minx, maxy
        self.height = round((maxy - miny) * self.scale + 2 * self.MARGIN, 1)

    def project(self, geom: shapely.Geometry) -> shapely.Geometry:
        """``geom`` in the metric CRS."""
        return shapely.transform(geom, lambda xy: np.column_stack(self._to_metric.transform(xy[:, 0], xy[:, 1])))

    def xy(self, metric_geom: shapely.Geometry) -> shapely.Geometry:
        """A metric geometry in SVG user units (y down)."""
        return shapely.transform(metric_geom, lambda xy: np.column_stack((
            (xy[:, 0] - self.minx) * self.scale + self.MARGIN, (self.maxy - xy[:, 1]) * self.scale + self.MARGIN)))

    def path(self, geojson_features: list[dict]) -> str:
        """One SVG path ``d`` for all the lines and polygon rings of ``geojson_features``."""
        parts = []
        for feature in geojson_features:
            geom = self.xy(self.project(shapely.geometry.shape(feature["geometry"])))
            for line in _lines(geom):
                coords = np.asarray(line.coords)
                if len(coords) < 2:
                    continue
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
                parts.append(f"M{points}" + ("Z" if isinstance(line, shapely.LinearRing) else ""))
        return "".join(parts)

    def anchor(self, geojson_geometry: dict) -> tuple[float, float]:
        """Where a label goes for a geometry: a point inside it, in SVG units."""
        geom = self.xy(self.project(shapely.geometry.shape(geojson_geometry)))
        spot = geom.representative_point()
        return round(spot.x, 1), round(spot.y, 1)

    def svg(self, body: str, *, title: str) -> str:
        """An SVG element of the map's size around ``body``."""
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {MAP_WIDTH} {self.height}" role="img" '
                f'class="report-map"><title>{_escape(title)}</title>{body}</svg>')


def _lines(geom: shapely.Geometry) -> list:
    """The lines of a geometry: linestrings as they are, polygons as their rings."""
    if isinstance(geom, shapely.LineString | shapely.LinearRing):
        return [geom]
    if isinstance(geom, shapely.Polygon):
        return [geom.exterior, *geom.interiors]
    if hasattr(geom, "geoms"):
        return [line for part in geom.geoms for line in _lines(part)]
    return []


def _escape(text: str) -> str:
    return str(Markup.escape(text))


def _draw_maps(layers: dict, streets: dict, numbers: dict, points: list[dict], metric_crs: str) -> dict[str, str]:
    """SVG maps over the district outlines: uncovered streets, counted points and suggested sites; gaps and overlaps."""
    canvas = _Canvas(layers["districts"]["features"], layers["grids"]["features"], metric_crs)
    outline = f'<path class="map-district" d="{canvas.path(layers["districts"]["features"])}"/>'
    dots = "".join(f'<circle class="map-point" cx="{x}" cy="{y}" r="4"/>'
                   for x, y in (canvas.anchor(p["geometry"]) for p in points))
    sites = (numbers["sites"] or {"features": []})["features"]
    site_marks = "".join(_mark(canvas, site["geometry"], "site", site["properties"]["rank"], offset=0)
                         for site in sites)
    uncovered = (f'<path class="map-streets" d="{canvas.path(layers["streets"]["features"])}"/>{outline}'
                 f'<path class="map-uncovered" d="{canvas.path(streets["features"])}"/>{dots}{site_marks}')
    gaps = numbers["gaps"]["features"]
    gap_paths = "".join(f'<path class="map-{f["properties"]["type"]}" d="{canvas.path([f])}"/>' for f in gaps)
    marks = "".join(_mark(canvas, f["geometry"], f["properties"]["type"], n, offset=MARK_OFFSET)
                    for n, f in enumerate(gaps, start=1))
    gap_map = f'<path class="map-grids" d="{canvas.path(layers["grids"]["features"])}"/>{outline}{gap_paths}{marks}'
    return {"uncovered": canvas.svg(uncovered, title="uncovered streets"),
            "gaps": canvas.svg(gap_map, title="grid gaps and overlaps")}


def _mark(canvas: _Canvas, geometry: dict, kind: str, number: int, *, offset: float) -> str:
    """A numbered circle for a geometry; with an offset, beside it on a leader line (small pieces stay visible)."""
    x, y = canvas.anchor(geometry)
    mx, my = x + offset, y - offset
    line = f'<line x1="{x}" y1="{y}" x2="{mx}" y2="{my}"/>' if offset else ""
    return (f'<g class="map-mark map-mark-{kind}">{line}<circle cx="{mx}" cy="{my}" r="13"/>'
            f'<text x="{mx}" y="{my}" dy="0.35em">{number}</text></g>')


# -- PDF ------------------------------------------------------------------------------------------------------------

def print_pdf(html: str) -> bytes:
    """The report printed to PDF (A4) by the headless Chromium, after its charts are drawn.

    Printed on a thread of its own: Playwright's synchronous API refuses to run where an asyncio loop already runs
    (a notebook, or a caller that drives a browser itself).

    The pages read right; the text layer (copy, search) carries a CJK radical for a few ideographs (⺠ for 民,
    ⻓ for 长): Chromium writes each glyph as the lowest code point the font maps to it, and Noto CJK maps those
    radicals to the ideographs' glyphs.

    Raises:
        ReportUnavailable: Playwright or the browser is missing, or printing failed.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-pdf") as pool:
        return pool.submit(_print_pdf, html).result()


def _print_pdf(html: str) -> bytes:
    if not Path(CHROMIUM).exists():
        raise ReportUnavailable(f"a PDF needs Debian's chromium at {CHROMIUM} (apt-get install chromium "
                                "fonts-noto-cjk); the HTML report needs no browser")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ReportUnavailable("PDF needs Playwright (pip install playwright) and Debian's chromium") from None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
            try:
                page = browser.new_page()
                # The report is self-contained: anything it would fetch is refused rather than fetched.
                page.route("**/*", lambda route: route.abort())
                page.set_content(html, wait_until="load", timeout=PDF_TIMEOUT_S * 1000)
                page.wait_for_selector("body[data-charts-ready]", state="attached", timeout=PDF_TIMEOUT_S * 1000)
                return page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
            finally:
                browser.close()
    except PlaywrightError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReportUnavailable(f"the browser could not print the report ({CHROMIUM}): {reason}") from None
