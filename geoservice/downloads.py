"""Coverage results as files to download: CSV, GeoJSON and GeoPackage.

A planner takes the answer of the coverage queries into a spreadsheet or QGIS. This module turns the result the API
already computed (``coverage.uncovered_streets``, ``coverage.grid_coverage``) into one file, without computing
anything again, so a download holds exactly what the JSON answer holds:

- ``csv``: one row per feature, the properties as columns and the geometry as WKT (WGS 84) in the last column;
  UTF-8 with a byte-order mark, because spreadsheet programs on Chinese Windows read BOM-less CSV as GBK and garble
  the street names;
- ``geojson``: a FeatureCollection (the uncovered streets keep the ``summary`` member of the API answer);
- ``gpkg``: a GeoPackage written by pyogrio, geometries in EPSG:4326; the uncovered streets come with a one-row
  ``summary`` table holding the totals.

Street and grid names come from the city's data, so text a spreadsheet would run (``=HYPERLINK(…)``, a leading
``+``, ``-``, ``@``, tab or carriage return) gets a quote in front in CSV and GeoPackage files
(:mod:`geoservice.spreadsheet`); GeoJSON is JSON and keeps the text as the API answers it.

Uncovered portions are written as MultiLineStrings (a street may have several uncovered stretches), because a
GeoPackage layer has one geometry type.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import NamedTuple

import geopandas as gpd
import pandas as pd
import pyogrio
from shapely.geometry import MultiLineString, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy.engine import Connection

from geoservice import features, spreadsheet
from geoservice.vocab import KIND_CODES

INLINE = "json"
DOWNLOAD_FORMATS = ("csv", "geojson", "gpkg")
FORMATS = (INLINE, *DOWNLOAD_FORMATS)
"""Values of the API's ``f`` parameter: ``json`` answers inline (the default), the others are attachments."""

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "geojson": "application/geo+json",
               "gpkg": "application/geopackage+sqlite3"}
STREET_COLUMNS = ("id", "name", "class", "length_m", "street_length_m")
SUMMARY_COLUMNS = ("radius_m", "mode", "kinds", "total_km", "covered_km", "uncovered_km", "covered_pct")
GRID_COLUMNS = ("code", "name", "street_km", "covered_km", "uncovered_km", "covered_pct", "points")


class Download(NamedTuple):
    """A file to send: its bytes, media type and file name."""

    body: bytes
    media_type: str
    filename: str


def uncovered_streets_file(result: dict, *, fmt: str) -> Download:
    """The answer of ``coverage.uncovered_streets`` as a file.

    Args:
        result: the FeatureCollection with ``summary`` that ``coverage.uncovered_streets`` returned.
        fmt: ``csv``, ``geojson`` or ``gpkg``.

    Returns:
        The file, named after the mode and radius (``uncovered-streets-walk-500m.csv``).
    """
    summary = result["summary"]
    name = f"uncovered-streets-{summary['mode']}-{summary['radius_m']:g}m"
    if fmt == "geojson":
        return _geojson_file(result, name)
    frame = _frame(result["features"], STREET_COLUMNS, multi_lines=True)
    if fmt == "csv":
        return Download(_csv_bytes(frame), MEDIA_TYPES["csv"], f"{name}.csv")
    totals = {**{key: summary[key] for key in SUMMARY_COLUMNS}, "kinds": ",".join(summary["kinds"])}
    return Download(_gpkg_bytes({"uncovered_streets": (frame, "MultiLineString"),
                                 "summary": (pd.DataFrame([totals], columns=list(SUMMARY_COLUMNS)), None)}),
                    MEDIA_TYPES["gpkg"], f"{name}.gpkg")


def grid_coverage_file(conn: Connection, grids: list[dict], *, kinds: tuple[str, ...] | None, radius_m: float,
                       mode: str, fmt: str) -> Download:
    """The answer of ``coverage.grid_coverage`` as a file, each grid with its outline.

    Args:
        conn: database connection (for the grid outlines).
        grids: what ``coverage.grid_coverage`` returned.
        kinds: the point kinds asked for (None or empty: all); each gets a ``points_<kind>`` column.
        radius_m: the radius used (for the file name).
        mode: the mode used (for the file name).
        fmt: ``csv``, ``geojson`` or ``gpkg``.

    Returns:
        The file (``grid-coverage-straight-500m.gpkg``), one row or feature per grid, in the order of ``grids``.
    """
    collection = grid_coverage_collection(conn, grids, kinds=kinds)
    name = f"grid-coverage-{mode}-{radius_m:g}m"
    if fmt == "geojson":
        return _geojson_file(collection, name)
    columns = tuple(collection["features"][0]["properties"]) if collection["features"] else GRID_COLUMNS
    frame = _frame(collection["features"], columns, multi_lines=False)
    if fmt == "csv":
        return Download(_csv_bytes(frame), MEDIA_TYPES["csv"], f"{name}.csv")
    return Download(_gpkg_bytes({"grid_coverage": (frame, "Polygon")}), MEDIA_TYPES["gpkg"], f"{name}.gpkg")


def grid_coverage_collection(conn: Connection, grids: list[dict], *, kinds: tuple[str, ...] | None) -> dict:
    """Grid coverage as a GeoJSON FeatureCollection of grid outlines with flat properties.

    ``points_by_kind`` becomes ``points`` (all requested kinds) and one ``points_<kind>`` column per kind, so the
    same columns fit a CSV, a GeoPackage and a GeoJSON file.
    """
    kinds = tuple(kinds or KIND_CODES)
    outlines = {f["properties"]["code"]: f["geometry"] for f in features.layer_collection(conn, "grids")["features"]}
    out = []
    for grid in grids:
        props = {key: grid[key] for key in GRID_COLUMNS if key != "points"}
        counts = grid["points_by_kind"]
        props["points"] = sum(counts.values())
        props.update({f"points_{kind}": counts.get(kind, 0) for kind in kinds})
        out.append({"type": "Feature", "id": grid["code"], "geometry": outlines[grid["code"]], "properties": props})
    return {"type": "FeatureCollection", "features": out}


SITE_COLUMNS = ("rank", "lon", "lat", "gain_km", "covered_pct", "source", "street_id")


def sites_file(result: dict, *, fmt: str) -> Download:
    """The answer of ``siting.suggest_sites`` as a file: the chosen sites in order.

    Args:
        result: the FeatureCollection with ``summary`` that ``siting.suggest_sites`` returned.
        fmt: ``csv`` (one row per site, lon and lat as columns besides the WKT) or ``geojson`` (the answer itself,
            summary included).

    Returns:
        The file, named after the question (``sites-straight-500m-5.csv``, ``sites-walk-500m-90pct.geojson``).
    """
    summary = result["summary"]
    size = f"{summary['count']}" if summary["count"] is not None else f"{summary['target_pct']:g}pct"
    name = f"sites-{summary['mode']}-{summary['radius_m']:g}m-{size}"
    if fmt == "geojson":
        return _geojson_file(result, name)
    frame = _frame(result["features"], SITE_COLUMNS, multi_lines=False)
    return Download(_csv_bytes(frame), MEDIA_TYPES["csv"], f"{name}.csv")


def _geojson_file(collection: dict, name: str) -> Download:
    body = json.dumps(collection, ensure_ascii=False).encode("utf-8")
    return Download(body, MEDIA_TYPES["geojson"], f"{name}.geojson")


def _frame(feature_list: list[dict], columns: tuple[str, ...], *, multi_lines: bool) -> gpd.GeoDataFrame:
    rows = [[f["properties"].get(c) for c in columns] for f in feature_list]
    geometries = [_geometry(f["geometry"], multi_lines=multi_lines) for f in feature_list]
    data = pd.DataFrame(rows, columns=list(columns))
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geometries, crs="EPSG:4326"), crs="EPSG:4326")


def _geometry(geojson: dict, *, multi_lines: bool) -> BaseGeometry:
    geom = shape(geojson)
    if multi_lines and geom.geom_type == "LineString":
        return MultiLineString([geom])
    return geom


def _csv_bytes(frame: gpd.GeoDataFrame) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    columns = [c for c in frame.columns if c != "geometry"]
    writer.writerow([*columns, "wkt"])
    for row, geom in zip(frame[columns].itertuples(index=False), frame.geometry, strict=True):
        writer.writerow([*("" if pd.isna(v) else spreadsheet.cell(v) for v in row), geom.wkt])
    return text.getvalue().encode("utf-8-sig")


def _gpkg_bytes(layers: dict[str, tuple[pd.DataFrame, str | None]]) -> bytes:
    # GDAL cannot add a second layer to an in-memory GeoPackage through pyogrio, so write a temporary file.
    with tempfile.TemporaryDirectory(prefix="geoservice-download-") as folder:
        path = Path(folder) / "download.gpkg"
        for layer, (frame, geometry_type) in layers.items():
            options = {"geometry_type": geometry_type} if geometry_type else {}
            pyogrio.write_dataframe(spreadsheet.neutralise_frame(frame), path, layer=layer, driver="GPKG", **options)
        return path.read_bytes()
