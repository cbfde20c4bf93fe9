"""The coverage report as a download from the planner page: ``GET /planner/report``.

Parameters as on ``/api/v1/coverage/streets`` (``radius``, ``kind`` repeated or comma-separated, ``mode``,
``district``, ``planned``, read by the same definitions in ``geoservice.api.openapi``), plus ``sites`` (how many new
sites to suggest, 0 for none), ``f=html|pdf`` and ``lang=zh|en``.
The report is an analysis (it takes an analysis slot, like coverage) and is sent as an attachment named after the
question and the day. Bad input is a 400 naming the parameter; the answer is never a half-made report.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from geoservice import budget, hours, report, siting
from geoservice.api import openapi
from geoservice.errors import InvalidParameter
from geoservice.query import default_radius_m

bp = Blueprint("report", __name__)

FORMAT = openapi.choice("f", "html = the self-contained report; pdf = printed by headless Chromium", report.FORMATS,
                        default="html")
LANG = openapi.choice("lang", "zh = Chinese (default), en = English", report.LANGS, default="zh")
SITES = openapi.integer("sites", "how many new sites to suggest (0: no siting section)", minimum=0,
                        maximum=siting.MAX_COUNT, default=report.DEFAULT_SITE_COUNT)
PARAMETERS = (openapi.RADIUS, openapi.KIND, openapi.MODE, openapi.DISTRICT, openapi.PLANNED, SITES, FORMAT, LANG)
MEDIA_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def _read_query() -> dict:
    """The query parameters, read and checked by their definitions; unknown or repeated ones are refused."""
    params = {p.name: p for p in PARAMETERS}
    unknown = [name for name in request.args if name not in params]
    if unknown:
        raise InvalidParameter(f"unknown parameter {unknown[0]!r}; /planner/report accepts: {', '.join(params)}")
    values = {}
    for name, param in params.items():
        raws = request.args.getlist(name)
        if not param.repeated and len(raws) > 1:
            raise InvalidParameter(f"{name} is given {len(raws)} times; give it once")
        values[name] = param.read(raws) if param.repeated else param.read(raws[0] if raws else None)
    return values


@bp.get("/planner/report")
def coverage_report():
    """The coverage report for the planner page's question, as an HTML or PDF download."""
    args = _read_query()
    settings = current_app.config["GEOSERVICE_SETTINGS"]
    kinds = args["kind"] or None
    radius = default_radius_m(kinds) if args["radius"] is None else args["radius"]
    now = hours.local_now(settings.timezone)
    options = report.ReportOptions.from_settings(settings, lang=args["lang"], site_count=args["sites"],
                                                 include_planned=args["planned"], generated_at=now)
    conn = budget.connection("analysis")
    budget.take_analysis_slot(conn, settings)
    html = report.coverage_report(conn, radius_m=radius, kinds=kinds, mode=args["mode"], district=args["district"],
                                  metric_crs=settings.metric_crs, options=options)
    fmt = args["f"]
    body = report.print_pdf(html) if fmt == "pdf" else html.encode("utf-8")
    response = Response(body, content_type=MEDIA_TYPES[fmt])
    name = f"coverage-report-{radius:g}m-{args['mode']}-{args['district'] or 'city'}-{now:%Y%m%d}.{fmt}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
