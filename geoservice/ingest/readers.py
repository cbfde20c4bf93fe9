"""Opening the files a bureau brings: GeoJSON, GeoPackage, Shapefile (plain or zipped), CSV/XLSX, OSM PBF.

Vector formats are read by GDAL through pyogrio, tables by pandas (openpyxl for XLSX), OpenStreetMap by pyrosm
(see :mod:`geoservice.ingest.osm`); nothing here parses a format by hand. Every reader returns a
:class:`SourceTable`: a GeoDataFrame whose ``geometry`` column is in the file's own CRS (``crs`` None when the file
does not say), and the row number of its first record — 2 for CSV/XLSX (the header is row 1, as a spreadsheet
shows it), 1 for feature formats (feature 1, 2, …) — so rejections point at the row a person can find.

Encodings: a Shapefile's ``.cpg`` names its encoding; without one, UTF-8 is tried and, if the bytes are not
UTF-8, GB18030 (a superset of GBK, what Chinese GIS software writes). CSV files the same (Excel in China saves
CSV as GBK). ``encoding=`` overrides both.

:func:`to_wgs84` then honours the file's CRS (or ``--crs``), converts GCJ-02/BD-09 with :mod:`geoservice.crs`,
and refuses a file whose CRS is unknown (a Shapefile without ``.prj``) rather than guess.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from geoservice import crs as chinese_crs
from geoservice import spreadsheet
from geoservice.errors import InvalidParameter
from geoservice.ingest.kinds import KindSpec

VECTOR_SUFFIXES = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GeoPackage", ".shp": "Shapefile",
                   ".zip": "zipped Shapefile"}
TABLE_SUFFIXES = {".csv": "CSV", ".txt": "CSV", ".xlsx": "XLSX"}
OSM_SUFFIXES = {".pbf": "OSM PBF"}
ALLOWED_SUFFIXES = (*VECTOR_SUFFIXES, *TABLE_SUFFIXES, ".osm.pbf")
LON_NAMES = ("lon", "lng", "longitude", "x", "经度")
LAT_NAMES = ("lat", "latitude", "y", "纬度")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "shape")
CHINESE_SYSTEMS = ("gcj02", "bd09")
GEOMETRY_ERROR = "__geometry_error__"
FALLBACK_ENCODING = "GB18030"


@dataclass
class SourceTable:
    """What a reader found: the records, their CRS and where their row numbers start."""

    frame: gpd.GeoDataFrame
    first_row: int
    format: str
    # Shapefile/GeoPackage without a CRS: refuse unless --crs is given; CSV/XLSX lon/lat default to WGS 84.
    crs_required: bool = False


def file_format(path: Path) -> str:
    """The format name of ``path`` from its extension; InvalidParameter listing the allowed ones otherwise."""
    suffix = path.suffix.lower()
    for table in (VECTOR_SUFFIXES, TABLE_SUFFIXES, OSM_SUFFIXES):
        if suffix in table:
            return table[suffix]
    raise InvalidParameter(f"cannot tell the format of {path.name} from its extension; allowed: "
                           f"{', '.join(ALLOWED_SUFFIXES)}")


def read_source(path: str | Path, *, kind: KindSpec, layer: str | None = None, encoding: str | None = None,
                mapping: dict[str, str] | None = None) -> SourceTable:
    """Read ``path`` into a :class:`SourceTable` with the kind's column names (after ``mapping``).

    Args:
        path: the file.
        kind: what is being imported (OSM files are read differently for streets and points).
        layer: GeoPackage layer, Shapefile inside a zip, or XLSX sheet; None: the only one, or the one named
            after the kind.
        encoding: text encoding of Shapefile attributes or CSV; None: ``.cpg``, else UTF-8, else GB18030.
        mapping: ``{field: column}``: take ``field`` (or ``lon``/``lat``/``wkt``) from ``column``.

    Raises:
        InvalidParameter: missing file, unknown extension, unreadable content, unknown layer or column.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameter(f"no such file: {path}")
    fmt = file_format(path)
    if fmt == "OSM PBF":
        from geoservice.ingest.osm import read_osm

        source = SourceTable(read_osm(path, kind=kind), 1, fmt)
    elif fmt in TABLE_SUFFIXES.values():
        frame = _read_table(path, layer=layer, encoding=encoding, fmt=fmt)
        if fmt == "CSV":  # our CSV exports quote text a spreadsheet would run (geoservice.spreadsheet)
            frame = spreadsheet.restore_frame(frame)
        frame = _apply_mapping(frame, mapping, kind, path)
        return SourceTable(_table_geometry(frame, kind, path), 2, fmt)
    else:
        source = _read_vector(path, kind=kind, layer=layer, encoding=encoding, fmt=fmt)
    source.frame = _apply_mapping(_untruncate(source.frame, kind), mapping, kind, path)
    return source


# -- vector formats -----------------------------------------------------------------------------------------

def _gdal_error(path: Path, fmt: str, exc: Exception) -> InvalidParameter:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidParameter(f"{path.name} is not a readable {fmt} file (truncated or malformed?): {reason}")


def _read_vector(path: Path, *, kind: KindSpec, layer: str | None, encoding: str | None, fmt: str) -> SourceTable:
    if fmt == "zipped Shapefile":
        source, members = _zipped_shapefile(path, layer)
        has_cpg = source.rsplit("/", 1)[-1][:-4] + ".cpg" in members
        layer = None
    elif fmt == "Shapefile":
        source = str(path)
        has_cpg = path.with_suffix(".cpg").exists() or path.with_suffix(".CPG").exists()
    else:
        source, has_cpg = str(path), True
        layer = _choose_layer(path, layer, kind, fmt)
    if encoding is None and not has_cpg:
        frame = _read_guessing_encoding(source, path, fmt)
    elif fmt in ("GeoPackage", "GeoJSON"):
        # Always UTF-8 by their specifications, so GDAL's columnar (Arrow) reader applies: several times faster.
        frame = _read_frame(source, path, fmt, layer=layer, use_arrow=True)
    else:
        frame = _read_frame(source, path, fmt, layer=layer, encoding=encoding)
    if fmt == "GeoPackage":  # our GeoPackage exports quote text a spreadsheet would run (geoservice.spreadsheet)
        frame = spreadsheet.restore_frame(frame)
    # GDAL leaves the CRS unset when a Shapefile has no .prj (or a GeoPackage layer an undefined SRS).
    return SourceTable(frame, 1, fmt, crs_required=fmt.endswith("Shapefile") or fmt == "GeoPackage")


def _read_frame(source: str, path: Path, fmt: str, **kwargs) -> gpd.GeoDataFrame:
    try:
        return pyogrio.read_dataframe(source, **kwargs)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.FieldError,
            pyogrio.errors.GeometryError) as exc:
        raise _gdal_error(path, fmt, exc) from exc


def _read_guessing_encoding(source: str, path: Path, fmt: str) -> gpd.GeoDataFrame:
    """No .cpg: the attributes are UTF-8 if they decode as such, else (in China) almost surely GBK."""
    try:
        return _read_frame(source, path, fmt, encoding="UTF-8")
    except UnicodeDecodeError:
        return _read_frame(source, path, fmt, encoding=FALLBACK_ENCODING)


def _zipped_shapefile(path: Path, layer: str | None) -> tuple[str, set[str]]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
    except zipfile.BadZipFile as exc:
        raise InvalidParameter(f"{path.name} is not a readable zip file: {exc}") from exc
    shapefiles = sorted(m for m in members if m.lower().endswith(".shp"))
    if layer:
        shapefiles = [m for m in shapefiles if m.rsplit("/", 1)[-1][:-4] == layer]
    if len(shapefiles) != 1:
        found = ", ".join(m.rsplit("/", 1)[-1][:-4] for m in sorted(members) if m.lower().endswith(".shp"))
        what = f"no Shapefile named {layer!r}" if layer else "not exactly one Shapefile"
        raise InvalidParameter(f"{path.name} holds {what} (found: {found or 'none'}); choose one with --layer")
    return f"/vsizip/{path.resolve()}/{shapefiles[0]}", members


def _choose_layer(path: Path, layer: str | None, kind: KindSpec, fmt: str) -> str | None:
    try:
        names = [str(name) for name, _geometry in pyogrio.list_layers(path)]
    except pyogrio.errors.DataSourceError as exc:
        raise _gdal_error(path, fmt, exc) from exc
    if layer is not None:
        if layer not in names:
            raise InvalidParameter(f"{path.name} has no layer {layer!r}; its layers: {', '.join(names)}")
        return layer
    if len(names) == 1:
        return names[0]
    for candidate in (kind.name, kind.table):
        if candidate in names:
            return candidate
    raise InvalidParameter(f"{path.name} has {len(names)} layers ({', '.join(names)}); choose one with --layer")


def _untruncate(frame: gpd.GeoDataFrame, kind: KindSpec) -> gpd.GeoDataFrame:
    """Shapefile (dBASE) cuts column names to 10 characters: ``opening_ho`` is ``opening_hours``."""
    renames = {}
    for column in frame.columns:
        if column in kind.columns or len(column) != 10:
            continue
        matches = [name for name in kind.columns if name[:10] == column]
        if len(matches) == 1:
            renames[column] = matches[0]
    return frame.rename(columns=renames)


# -- CSV / XLSX ---------------------------------------------------------------------------------------------

def _read_table(path: Path, *, layer: str | None, encoding: str | None, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "XLSX":
            return pd.read_excel(path, sheet_name=layer or 0, dtype=str, engine="openpyxl")
        if encoding:
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except UnicodeDecodeError:
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=FALLBACK_ENCODING)
    except (ValueError, OSError, pd.errors.ParserError, KeyError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidParameter(f"{path.name} is not a readable {fmt} file: {reason}") from exc


def _column(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _table_geometry(frame: pd.DataFrame, kind: KindSpec, path: Path) -> gpd.GeoDataFrame:
    """Points from lon/lat columns, or any geometry from a WKT column; None where a row has neither."""
    errors = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if kind.geometry is None:
        return gpd.GeoDataFrame(frame.assign(**{GEOMETRY_ERROR: errors}), geometry=[None] * len(frame))
    lon, lat, wkt = _column(frame, LON_NAMES), _column(frame, LAT_NAMES), _column(frame, WKT_NAMES)
    if lon is not None and lat is not None:
        xs = pd.to_numeric(frame[lon].replace("", np.nan), errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(frame[lat].replace("", np.nan), errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(xs) | np.isnan(ys)
        geometry = shapely.points(np.where(bad, 0, xs), np.where(bad, 0, ys))
        geometry[bad] = None
        errors[bad] = f"no coordinates: {lon!r} and {lat!r} must both be numbers"
        frame = frame.drop(columns=[lon, lat])
    elif wkt is not None:
        texts = frame[wkt].fillna("").astype(str).str.strip()
        geometry = shapely.from_wkt(texts.replace("", None).to_numpy(), on_invalid="ignore")
        missing = pd.isna(geometry)
        errors[missing & (texts != "").to_numpy()] = f"column {wkt!r} is not valid WKT"
        errors[missing & (texts == "").to_numpy()] = f"no geometry: column {wkt!r} is empty"
        frame = frame.drop(columns=[wkt])
    else:
        raise InvalidParameter(
            f"{path.name} has no geometry columns: give lon and lat columns ({'/'.join(LON_NAMES)}, "
            f"{'/'.join(LAT_NAMES)}) or a WKT column ({'/'.join(WKT_NAMES)}), or name yours with "
            "--map lon=COLUMN --map lat=COLUMN (or --map wkt=COLUMN)")
    return gpd.GeoDataFrame(frame.assign(**{GEOMETRY_ERROR: errors}), geometry=geometry, crs=None)


# -- columns ------------------------------------------------------------------------------------------------

def _apply_mapping(frame: pd.DataFrame, mapping: dict[str, str] | None, kind: KindSpec,
                   path: Path) -> pd.DataFrame:
    if not mapping:
        return frame
    allowed = (*kind.columns, "lon", "lat", "wkt")
    renames = {}
    for field, column in mapping.items():
        if field not in allowed:
            raise InvalidParameter(f"--map {field}={column}: {kind.name} have no field {field!r}; "
                                   f"allowed: {', '.join(allowed)}")
        if column not in frame.columns:
            columns = ", ".join(str(c) for c in frame.columns if c != "geometry")
            raise InvalidParameter(f"--map {field}={column}: {path.name} has no column {column!r}; "
                                   f"its columns: {columns}")
        renames[column] = field
    # A mapped-to field that already exists under its own name is replaced by the mapped column.
    frame = frame.drop(columns=[f for f in renames.values() if f in frame.columns and f not in renames])
    return frame.rename(columns=renames)


# -- coordinate reference systems ---------------------------------------------------------------------------

def _parse_crs(option: str) -> CRS:
    try:
        return CRS.from_user_input(option)
    except CRSError as exc:
        raise InvalidParameter(f"--crs must be EPSG:<code> (or another CRS pyproj knows), gcj02 or bd09; "
                               f"got {option!r}") from exc


def to_wgs84(source: SourceTable, *, crs: str | None, path: str | Path) -> gpd.GeoDataFrame:
    """The records with geometries in EPSG:4326, honouring the file's CRS or ``crs``.

    Args:
        source: what the reader found.
        crs: ``--crs``: ``EPSG:<code>`` (the coordinates are in that CRS, whatever the file says), ``gcj02``
            or ``bd09`` (lon/lat in that Chinese system, converted with the iterative inverses of
            :mod:`geoservice.crs`), or None (the file's CRS; CSV/XLSX lon/lat: WGS 84).
        path: the file, for messages.

    Raises:
        InvalidParameter: the CRS is unknown (a Shapefile without ``.prj``) and no ``crs`` is given, or ``crs``
            is not understood, or gcj02/bd09 is given for projected coordinates.
    """
    frame, name = source.frame, Path(path).name
    system = crs.strip().lower() if crs else None
    if system in CHINESE_SYSTEMS:
        if frame.crs is not None and not frame.crs.is_geographic:
            raise InvalidParameter(f"--crs {system} needs lon/lat coordinates, but {name} is in {frame.crs.name}")
        return _from_chinese(frame, system)
    if crs:
        return frame.set_crs(_parse_crs(crs), allow_override=True).to_crs(4326)
    if frame.crs is None:
        if source.crs_required and frame.geometry.notna().any():
            what = "no .prj file" if source.format.endswith("Shapefile") else "no coordinate reference system"
            raise InvalidParameter(
                f"{name} has {what}, so its coordinates cannot be placed; give the CRS with --crs "
                "(e.g. --crs EPSG:4326 for lon/lat, --crs EPSG:<code> of the projection the file was drawn in — "
                "a Gauss-Kruger or UTM zone —, --crs gcj02 for Amap/Tencent lon/lat)")
        return frame.set_crs(4326)
    return frame.to_crs(4326)


def _from_chinese(frame: gpd.GeoDataFrame, system: str) -> gpd.GeoDataFrame:
    def convert(coords: np.ndarray) -> np.ndarray:
        lons, lats = chinese_crs.to_wgs84_array(coords[:, 0], coords[:, 1], system)
        return np.column_stack([lons, lats])

    converted = shapely.transform(frame.geometry.to_numpy(), convert)
    return frame.set_geometry(gpd.GeoSeries(converted, index=frame.index, crs=4326), crs=4326)


# -- streaming big files ------------------------------------------------------------------------------------

@dataclass
class StreamInfo:
    """What a streamed read will give: the kind's columns the file has (after mapping) and the feature count."""

    columns: list[str]
    features: int
    layer: str | None
    format: str


def stream_info(path: str | Path, *, kind: KindSpec, layer: str | None = None,
                mapping: dict[str, str] | None = None) -> StreamInfo | None:
    """For a GeoPackage or GeoJSON file (UTF-8, read by GDAL's Arrow stream): its columns and size; else None."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".gpkg", ".geojson", ".json"):
        return None
    fmt = file_format(path)
    layer = _choose_layer(path, layer, kind, fmt)
    try:
        info = pyogrio.read_info(path, layer=layer)
    except pyogrio.errors.DataSourceError as exc:
        raise _gdal_error(path, fmt, exc) from exc
    empty = _apply_mapping(_untruncate(pd.DataFrame(columns=list(info["fields"])), kind), mapping, kind, path)
    return StreamInfo([c for c in kind.columns if c in empty.columns], int(info["features"]), layer, fmt)


def stream_batches(path: str | Path, info: StreamInfo, *, kind: KindSpec, mapping: dict[str, str] | None,
                   batch_rows: int):
    """The file as a sequence of :class:`SourceTable` of ``batch_rows`` features each (first_row numbered on)."""
    path = Path(path)
    first_row = 1
    with pyogrio.open_arrow(path, layer=info.layer, batch_size=batch_rows, use_pyarrow=True) as (meta, reader):
        crs = meta.get("crs")
        geometry = meta.get("geometry_name") or "wkb_geometry"
        for batch in reader:
            table = batch.to_pandas()
            geoms = shapely.from_wkb(table.pop(geometry).to_numpy()) if geometry in table.columns else None
            frame = gpd.GeoDataFrame(table.drop(columns=[meta.get("fid_column") or "fid"], errors="ignore"),
                                     geometry=geoms if geoms is not None else [None] * len(table), crs=crs)
            if info.format == "GeoPackage":
                frame = spreadsheet.restore_frame(frame)
            frame = _apply_mapping(_untruncate(frame, kind), mapping, kind, path)
            yield SourceTable(frame, first_row, info.format, crs_required=info.format == "GeoPackage")
            first_row += len(frame)
