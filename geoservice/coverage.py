"""Where coverage is missing: uncovered street portions, coverage per grid and per area, coverage against radius.

A street portion is covered when a qualifying point — ``open`` (or ``planned`` too, for "what if"), of one of the
requested kinds — is within the radius of it (DESIGN.md, "Semantics of the queries"):

- ``straight``: the part of the street inside the union of the points' radius circles, in the metric CRS, exactly
  (segment–circle intersections, not polygonised buffers);
- ``walk``: the part of the street reachable within the radius along the network from any point, from either end
  of each edge, access legs included.

Every answer here is computed by the in-memory engine (``geoservice.coverage_engine``), loaded once per data version
and shared by all radii and kind sets, so a planner's slider gets an answer per step instead of a query over the
whole city. The default radius is 500 m (GB 50180-2018: a 10-minute living circle is about a 500 m walk), 300 m
when the only kind asked for is ``toilet``; every radius is a parameter. Streets are cut in the city's metric CRS,
which the caller passes from the settings, and every length is measured on the spheroid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.engine import Connection

from geoservice.coverage_engine import CoverageEngine, complement, engine_for, intersect, without_cyclic_gc
from geoservice.errors import InvalidParameter
from geoservice.query import (
    MAX_RADIUS_M,
    BBox,
    check_bbox,
    check_district,
    check_kinds,
    check_metres,
    check_mode,
    check_radius,
    clip_bbox,
)

MIN_PORTION_M = 0.01
"""Uncovered pieces of a street shorter than this (floating-point crumbs) are not listed as features; they still
count in the summary's lengths."""
CURVE_RADII = tuple(float(r) for r in range(50, 1001, 50))
"""The radii of the coverage curve when none are given: 50 m to 1 km, every 50 m."""
MAX_CURVE_RADII = 40
DISTANCE_EDGES = tuple(float(r) for r in range(0, 1001, 50))
"""Bin edges of the distance distribution when none are given: 0 to 1 km, every 50 m."""
AREA_LEVELS = ("subdistrict", "community")

# -- validation --------------------------------------------------------------------------------------------

# -- areas the streets are cut to ------------------------------------------------------------------------------

def _street_rows(engine: CoverageEngine, *, mode: str, kinds: tuple[str, ...], radius: float, bbox: BBox | None,
                 district: str | None, include_planned: bool) -> dict:
    """Street and covered metres in the area, and each street with an uncovered part.

    Per such street: its uncovered metres, its length in the area and the uncovered portions (the coordinates of a
    GeoJSON MultiLineString, None when shorter than :data:`MIN_PORTION_M`). Only the streets with something
    uncovered are visited one by one: at a useful radius they are few.
    """
    covered = _covered(engine, mode=mode, kinds=kinds, radius=radius, include_planned=include_planned)
    area = engine.area_pieces(bbox=bbox, district=district)
    pieces = engine.whole_streets() if area is None else area
    n = engine.n_streets
    piece_street = np.floor(pieces[0] / 2).astype(np.int64)
    total = np.bincount(piece_street, weights=engine.lengths(*pieces), minlength=n)
    covered_m = float(np.minimum(engine.covered_within(covered, *pieces), engine.lengths(*pieces)).sum())
    gaps = complement(covered, n) if area is None else intersect(complement(covered, n), area)[1:]
    gap_street = np.floor(gaps[0] / 2).astype(np.int64)
    gap_m = engine.lengths(*gaps)
    uncovered = np.bincount(gap_street, weights=gap_m, minlength=n)
    drawn = gap_m >= MIN_PORTION_M / 10  # a crumb of a millimetre makes no line
    lines = engine.interval_lines(gaps[0][drawn], gaps[1][drawn])
    by_street: dict[int, list] = {}
    for street, line in zip(gap_street[drawn].tolist(), lines, strict=True):
        by_street.setdefault(street, []).append(line)
    which = np.flatnonzero(uncovered > 0)
    names, classes = engine.street_names, engine.street_classes
    streets = [{"id": street_id, "name": names[i], "class": classes[i], "total_m": total_m, "uncovered_m": gap,
                "geometry": by_street.get(i) if gap >= MIN_PORTION_M else None}
               for i, street_id, total_m, gap in zip(which.tolist(), engine.street_ids[which].tolist(),
                                                    total[which].tolist(), uncovered[which].tolist(), strict=True)]
    return {"total_m": float(total.sum()), "covered_m": covered_m, "streets": streets}


def _points_by_kind(engine: CoverageEngine, layer: str, codes: list[str], kinds: tuple[str, ...],
                    include_planned: bool) -> dict[str, dict[str, int]]:
    """Qualifying points inside each polygon of a layer, counted by kind (kept by the engine: no radius changes it)."""
    def count() -> dict[str, dict[str, int]]:
        poly, point = engine.points_in_layer(layer)
        qualifying = np.zeros(len(engine.point_ids), dtype=bool)
        qualifying[engine.qualifying(kinds, include_planned)] = True
        keep = qualifying[point]
        n_kinds = len(engine.kind_names)
        kind_names = engine.kind_names.tolist()
        counts = np.bincount(poly[keep] * n_kinds + engine.point_kind_code[point[keep]],
                             minlength=len(codes) * n_kinds)
        answer: dict[str, dict[str, int]] = {}
        cells = np.flatnonzero(counts)
        for p, k, n in zip((cells // n_kinds).tolist(), (cells % n_kinds).tolist(), counts[cells].tolist(),
                           strict=True):
            answer.setdefault(codes[p], {})[kind_names[k]] = n
        return answer

    return engine.kept(("points_by_kind", layer, tuple(sorted(kinds)), include_planned), count)


def _covered(engine: CoverageEngine, *, mode: str, kinds: tuple[str, ...], radius: float, include_planned: bool):
    return engine.covered(mode=mode, kinds=kinds, radius=radius, include_planned=include_planned)


# -- the queries -------------------------------------------------------------------------------------------

def uncovered_streets(conn: Connection, *, radius_m: float | None = None,  # noqa: PLR0913 (bbox, district, extent)
                      kinds: Sequence[str] | None = None,
                      mode: str = "straight", bbox: Sequence[float] | None = None, district: str | None = None,
                      metric_crs: str, extent: BBox | None = None, include_planned: bool = False) -> dict:
    """The street portions no qualifying point covers, with a summary.

    Args:
        conn: database connection.
        radius_m: coverage radius in metres (0 < r ≤ 10 000); None: 300 for toilets only, else 500.
        kinds: point kinds that count (None or empty: all); only ``open`` points count.
        mode: ``straight`` (distance in the metric CRS) or ``walk`` (along the street network).
        bbox: ``(minlon, minlat, maxlon, maxlat)``: only streets touching it, cut to it.
        district: 6-digit district code: only streets inside the district, cut to its outline.
        metric_crs: projected CRS for lengths and distances ("EPSG:<code>").
        extent: the city's extent (lon/lat): ``bbox`` is cut to it first, so a box far larger than the city is the
            whole city, and a box outside it covers no street (answered without a query).
        include_planned: count ``planned`` points as if open ("what if": coverage after the plan is built).

    Returns:
        A GeoJSON FeatureCollection of the uncovered portion of each street segment (id, name, class, length_m,
        street_length_m) and a ``summary``: radius_m, mode, kinds, total_km, covered_km, uncovered_km,
        covered_pct (None when there are no streets) and ``uncovered_by_street`` — uncovered km per street name,
        most first.

    Raises:
        InvalidParameter: a bad radius, kind, mode, bbox or district code.
        NotFound: no district with that code.
    """
    kinds_ok = check_kinds(kinds)
    radius = check_radius(radius_m, kinds)
    check_mode(mode)
    box = check_bbox(bbox)
    clipped = clip_bbox(box, extent) if box is not None and extent is not None else box
    outside = box is not None and clipped is None
    if clipped is not None and clipped == extent:
        clipped = None  # the box holds the whole city: the same answer as no box, without cutting anything
    district = check_district(conn, district)
    engine = engine_for(conn, metric_crs=metric_crs)
    question = {"radius_m": radius, "mode": mode, "kinds": list(kinds_ok), "bbox": list(bbox) if bbox else None,
                "district": district, "include_planned": include_planned}
    with without_cyclic_gc():
        answer = {"total_m": 0.0, "covered_m": 0.0, "streets": []} if outside else _street_rows(
            engine, mode=mode, kinds=kinds_ok, radius=radius, bbox=clipped, district=district,
            include_planned=include_planned)
        return _uncovered_answer(answer, question)


def _uncovered_answer(answer: dict, question: dict) -> dict:
    """The FeatureCollection and summary of :func:`uncovered_streets` from :func:`_street_rows`' answer."""
    by_name: dict[str | None, float] = {}
    for row in answer["streets"]:
        by_name[row["name"]] = by_name.get(row["name"], 0.0) + row["uncovered_m"]
    drawn = [row for row in answer["streets"] if row["geometry"] is not None]
    lengths = np.round([row["uncovered_m"] for row in drawn], 1).tolist()
    street_lengths = np.round([row["total_m"] for row in drawn], 1).tolist()
    features = [{"type": "Feature", "id": row["id"],
                 "geometry": {"type": "MultiLineString", "coordinates": row["geometry"]},
                 "properties": {"id": row["id"], "name": row["name"], "class": row["class"], "length_m": length,
                                "street_length_m": street_length}}
                for row, length, street_length in zip(drawn, lengths, street_lengths, strict=True)]
    total, covered = answer["total_m"], answer["covered_m"]
    uncovered = sum(r["uncovered_m"] for r in answer["streets"])
    ranking = sorted(by_name.items(), key=lambda item: (-item[1], item[0] or ""))
    summary = {**question, "total_km": round(total / 1000, 3), "covered_km": round(covered / 1000, 3),
               "uncovered_km": round(uncovered / 1000, 3), "covered_pct": _pct(covered, total),
               "uncovered_by_street": [{"name": name, "uncovered_km": round(m / 1000, 3)} for name, m in ranking]}
    return {"type": "FeatureCollection", "features": features, "summary": summary}


def grid_coverage(conn: Connection, *, radius_m: float | None = None, kinds: Sequence[str] | None = None,
                  mode: str = "straight", metric_crs: str, include_planned: bool = False) -> list[dict]:
    """Street coverage per unit grid, weakest first.

    Args:
        conn: database connection.
        radius_m: coverage radius in metres (0 < r ≤ 10 000); None: 300 for toilets only, else 500.
        kinds: point kinds that count (None or empty: all); only ``open`` points count.
        mode: ``straight`` or ``walk`` (as :func:`uncovered_streets`).
        metric_crs: projected CRS for lengths and distances.
        include_planned: count ``planned`` points as if open ("what if").

    Returns:
        One dict per grid: code, name, street_km (street length inside the grid), covered_km, uncovered_km,
        covered_pct (None when the grid has no streets) and points_by_kind (open points of the requested kinds
        inside the grid; planned ones too with ``include_planned``). Sorted by covered_pct ascending, grids without
        streets last, then by code. A street on the boundary between two grids counts in both.

    Raises:
        InvalidParameter: a bad radius, kind or mode.
    """
    kinds_ok = check_kinds(kinds)
    radius = check_radius(radius_m, kinds)
    check_mode(mode)
    engine = engine_for(conn, metric_crs=metric_crs)
    covered = _covered(engine, mode=mode, kinds=kinds_ok, radius=radius, include_planned=include_planned)
    cover = engine.area_cover("grid", covered)
    rows = [{"code": code, "name": name, "street_m": float(street_m), "covered_m": float(covered_m)}
            for code, name, street_m, covered_m in zip(cover.codes, cover.names, cover.street_m, cover.covered_m,
                                                       strict=True)]
    points = _points_by_kind(engine, "grid", cover.codes, kinds_ok, include_planned)
    grids = [{"code": r["code"], "name": r["name"], "street_km": round(r["street_m"] / 1000, 3),
              "covered_km": round(r["covered_m"] / 1000, 3),
              "uncovered_km": round(max(0.0, r["street_m"] - r["covered_m"]) / 1000, 3),
              "covered_pct": _pct(r["covered_m"], r["street_m"]),
              "points_by_kind": dict(sorted(points.get(r["code"], {}).items()))} for r in rows]
    grids.sort(key=lambda g: (g["covered_pct"] is None, g["covered_pct"] or 0.0, g["code"]))
    return grids


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


def coverage_by_area(conn: Connection, *, level: str, radius_m: float | None = None,
                     kinds: Sequence[str] | None = None, mode: str = "straight", metric_crs: str,
                     include_planned: bool = False) -> list[dict]:
    """Street coverage per subdistrict (街道) or community (社区), weakest first.

    Args:
        conn: database connection.
        level: ``subdistrict`` or ``community``.
        radius_m: coverage radius in metres; None: 300 for toilets only, else 500.
        kinds: point kinds that count (None or empty: all).
        mode: ``straight`` or ``walk``.
        metric_crs: projected CRS for lengths and distances.
        include_planned: count ``planned`` points as if open.

    Returns:
        One dict per area with an outline: code, name, street_km, covered_km, uncovered_km, covered_pct (None
        without streets). A street on the boundary between two areas counts in both.

    Raises:
        InvalidParameter: a bad level, radius, kind or mode.
    """
    if level not in AREA_LEVELS:
        raise InvalidParameter(f"level must be one of {', '.join(AREA_LEVELS)}; got {level!r}")
    kinds_ok = check_kinds(kinds)
    radius = check_radius(radius_m, kinds)
    check_mode(mode)
    engine = engine_for(conn, metric_crs=metric_crs)
    covered = _covered(engine, mode=mode, kinds=kinds_ok, radius=radius, include_planned=include_planned)
    cover = engine.area_cover(level, covered)
    areas = [{"code": code, "name": name, "street_km": round(street_m / 1000, 3),
              "covered_km": round(covered_m / 1000, 3), "uncovered_km": round(max(0.0, street_m - covered_m) / 1000, 3),
              "covered_pct": _pct(covered_m, street_m)}
             for code, name, street_m, covered_m in zip(cover.codes, cover.names, cover.street_m.tolist(),
                                                        cover.covered_m.tolist(), strict=True)]
    areas.sort(key=lambda a: (a["covered_pct"] is None, a["covered_pct"] or 0.0, a["code"]))
    return areas


def _check_radii(radii: Sequence[float] | None) -> tuple[float, ...]:
    if radii is None or len(radii) == 0:
        return CURVE_RADII
    if len(radii) > MAX_CURVE_RADII:
        raise InvalidParameter(f"radius may be given at most {MAX_CURVE_RADII} times; got {len(radii)}")
    return tuple(sorted({check_metres("radius", r, MAX_RADIUS_M) for r in radii}))


def coverage_curve(conn: Connection, *, kinds: Sequence[str] | None = None, mode: str = "straight",
                   radii: Sequence[float] | None = None, metric_crs: str, include_planned: bool = False) -> dict:
    """Covered share of the city's streets against the radius, for one kind set — the planner's curve, in one call.

    Args:
        conn: database connection.
        kinds: point kinds that count (None or empty: all).
        mode: ``straight`` or ``walk`` (walking: one network search serves every radius).
        radii: the radii in metres (default :data:`CURVE_RADII`; at most :data:`MAX_CURVE_RADII`, each 0 < r ≤ 10 km).
        metric_crs: projected CRS for lengths and distances.
        include_planned: count ``planned`` points as if open.

    Returns:
        ``{"mode", "kinds", "include_planned", "total_km", "curve": [{"radius_m", "covered_km", "covered_pct"}]}``,
        radii ascending.

    Raises:
        InvalidParameter: a bad radius, kind or mode, or too many radii.
    """
    kinds_ok = check_kinds(kinds)
    check_mode(mode)
    radii_ok = _check_radii(radii)
    engine = engine_for(conn, metric_crs=metric_crs)
    covered = engine.covered_curve(mode=mode, kinds=kinds_ok, radii=np.array(radii_ok), include_planned=include_planned)
    total = float(engine.lengths(*engine.whole_streets()).sum())
    return {"mode": mode, "kinds": list(kinds_ok), "include_planned": include_planned,
            "total_km": round(total / 1000, 3),
            "curve": [{"radius_m": r, "covered_km": round(c / 1000, 3), "covered_pct": _pct(c, total)}
                      for r, c in zip(radii_ok, covered.tolist(), strict=True)]}


def distance_distribution(conn: Connection, *, kinds: Sequence[str] | None = None, mode: str = "straight",
                          edges: Sequence[float] | None = None, metric_crs: str, include_planned: bool = False) -> dict:
    """Street length by its distance to the nearest qualifying point (straight or walking), in bins.

    The street length within distance d of a point is the covered length at radius d, so the bins are differences
    of the coverage curve at their edges: one computation, exact.

    Args:
        conn: database connection.
        kinds: point kinds that count (None or empty: all).
        mode: ``straight`` or ``walk``.
        metric_crs: projected CRS for lengths and distances.
        include_planned: count ``planned`` points as if open.
        edges: ascending bin edges in metres starting at 0 (default :data:`DISTANCE_EDGES`; at most
            :data:`MAX_CURVE_RADII` + 1).

    Returns:
        ``{"mode", "kinds", "include_planned", "total_km", "bins": [{"from_m", "to_m", "km"}], "beyond_km"}`` —
        beyond_km: street farther than the last edge from every point (or unreachable).
    """
    kinds_ok = check_kinds(kinds)
    check_mode(mode)
    edges_ok = DISTANCE_EDGES if edges is None else (0.0, *_check_radii([e for e in edges if e != 0]))
    engine = engine_for(conn, metric_crs=metric_crs)
    within = engine.covered_curve(mode=mode, kinds=kinds_ok, radii=np.array(edges_ok[1:]),
                                  include_planned=include_planned)
    total = float(engine.lengths(*engine.whole_streets()).sum())
    cumulative = np.r_[0.0, within]
    bins = [{"from_m": a, "to_m": b, "km": round(max(0.0, hi - lo) / 1000, 3)}
            for a, b, lo, hi in zip(edges_ok[:-1], edges_ok[1:], cumulative[:-1].tolist(), cumulative[1:].tolist(),
                                    strict=True)]
    return {"mode": mode, "kinds": list(kinds_ok), "include_planned": include_planned,
            "total_km": round(total / 1000, 3), "bins": bins,
            "beyond_km": round(max(0.0, total - within[-1]) / 1000, 3)}
