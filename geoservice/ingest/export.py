"""Exporting a kind to a file whose format follows its extension; what it writes, an import reads back unchanged.

Formats: ``.gpkg`` (layer named after the kind), ``.geojson``/``.json``, ``.shp`` (UTF-8, with ``.cpg``; dBASE
cuts column names to 10 characters, which the importer recognises), ``.zip`` (a zipped Shapefile), ``.csv`` and
``.xlsx`` (geometry as full-precision WKT in a ``wkt`` column). Amenities are written as ``a;b;c``. Columns are
the catalogue's file properties: the database's columns an import reads, then the derived ones for the reader's
benefit (``area_m2`` of grids, ``length_m``/``source``/``target`` of streets), which an import ignores. Squads
have no geometry: CSV, XLSX, GeoJSON or GeoPackage.

Text a spreadsheet would run (a name starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is made
inert in CSV, XLSX and GeoPackage files by :mod:`geoservice.spreadsheet`: a quote in front in CSV and GeoPackage
text (which the importer takes off again), a string cell with Excel's quote prefix in XLSX.
"""

from __future__ import annotations

import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
import sqlalchemy as sa
from openpyxl import Workbook
from sqlalchemy.engine import Connection

from geoservice import spreadsheet
from geoservice.catalogue import Table
from geoservice.errors import InvalidParameter
from geoservice.ingest.kinds import KindSpec, kind_spec
from geoservice.ingest.load import CHUNK_ROWS, Progress

DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".shp": "ESRI Shapefile"}
TABLES = (".csv", ".xlsx")
ALLOWED = (*DRIVERS, ".zip", *TABLES)


@dataclass
class ExportResult:
    """What an export wrote."""

    kind: str
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        """Throughput of the whole export."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _select(table: Table) -> str:
    columns = []
    for prop in table.file_properties:
        if prop.sql_type == "text[]":
            columns.append(f"array_to_string({prop.select_sql}, ';') AS \"{prop.name}\"")
        else:
            columns.append(f'{prop.select_sql} AS "{prop.name}"')
    if table.geometry:
        columns.append(f"ST_AsBinary(t.{table.geometry.column}) AS geom")
    return f"SELECT {', '.join(columns)} FROM {table.name} t ORDER BY t.{table.import_key}"


def _fetch(conn: Connection, spec: KindSpec, progress: Progress | None) -> pd.DataFrame:
    total = conn.execute(sa.text(f"SELECT count(*) FROM {spec.table}")).scalar_one()
    # Per statement: Connection.execution_options() would leave later statements on server-side cursors.
    result = conn.execute(sa.text(_select(spec.catalogue_table)), execution_options={"stream_results": True})
    keys = list(result.keys())
    parts, done = [], 0
    for chunk in result.partitions(CHUNK_ROWS):
        parts.append(pd.DataFrame(chunk, columns=keys))
        done += len(chunk)
        if progress:
            progress("reading", done, total)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=keys)


def _frame(rows: pd.DataFrame, spec: KindSpec) -> gpd.GeoDataFrame:
    # Whole numbers that may be missing stay whole (pandas would make them floats to hold the gaps).
    for prop in spec.catalogue_table.file_properties:
        if prop.nullable and prop.sql_type in ("integer", "bigint"):
            rows[prop.name] = rows[prop.name].astype("Int64")
    if spec.geometry:
        geometry = shapely.from_wkb([bytes(g) for g in rows.pop("geom")])
    else:
        geometry = [None] * len(rows)
    return gpd.GeoDataFrame(rows, geometry=geometry, crs=4326)


def _write_table(frame: gpd.GeoDataFrame, path: Path, spec: KindSpec) -> None:
    table = pd.DataFrame(frame.drop(columns="geometry"))
    if spec.geometry:
        table["wkt"] = shapely.to_wkt(frame.geometry.to_numpy(), rounding_precision=-1)
    if path.suffix.lower() == ".xlsx":
        _write_xlsx(table, path, spec)
    else:
        # RFC 4180 line ends: with them pandas also quotes a field holding a lone carriage return (with "\n" it
        # writes it bare, and every reader splits the row there).
        spreadsheet.neutralise_frame(table).to_csv(path, index=False, encoding="utf-8", lineterminator="\r\n")


def _write_xlsx(table: pd.DataFrame, path: Path, spec: KindSpec) -> None:
    """One sheet named after the kind: a header row, then the rows; text as string cells, never formulas."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(spec.name)
    sheet.append([spreadsheet.xlsx_cell(sheet, str(name)) for name in table.columns])
    for row in table.itertuples(index=False):
        sheet.append([spreadsheet.xlsx_cell(sheet, value) for value in row])
    workbook.save(path)


def _write_vector(frame: gpd.GeoDataFrame, path: Path, spec: KindSpec, driver: str) -> None:
    options = {"layer": spec.name} if driver == "GPKG" else {}
    if driver == "GPKG":
        frame = spreadsheet.neutralise_frame(frame)
    if driver == "ESRI Shapefile":
        options["encoding"] = "UTF-8"
    if driver == "GeoJSON":
        options["layer_options"] = {"SIGNIFICANT_FIGURES": 17}
    if path.exists() and driver != "GPKG":
        path.unlink()
    with warnings.catch_warnings():
        # dBASE cuts long column names with a warning per column; the importer maps them back.
        warnings.simplefilter("ignore", RuntimeWarning)
        pyogrio.write_dataframe(frame, path, driver=driver, **options)


def _write_zip(frame: gpd.GeoDataFrame, path: Path, spec: KindSpec) -> None:
    with tempfile.TemporaryDirectory() as folder:
        shp = Path(folder) / f"{spec.name}.shp"
        _write_vector(frame, shp, spec, "ESRI Shapefile")
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member in sorted(Path(folder).iterdir()):
                archive.write(member, member.name)


def export_file(conn: Connection, kind: str, path: str | Path, *, progress: Progress | None = None) -> ExportResult:
    """Write every row of ``kind`` to ``path`` (format from the extension); returns the count and the time.

    Raises:
        InvalidParameter: unknown kind, an extension that names no format, or a geometry-less kind (squads) to
            a Shapefile.
    """
    started = time.perf_counter()
    spec = kind_spec(kind)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ALLOWED:
        raise InvalidParameter(f"cannot tell the format from the extension of {path.name}; allowed: "
                               f"{', '.join(ALLOWED)}")
    if spec.geometry is None and suffix in (".shp", ".zip"):
        raise InvalidParameter(f"{spec.name} have no geometry, and a Shapefile needs one; use .csv, .xlsx, "
                               ".geojson or .gpkg")
    if not path.parent.is_dir():
        raise InvalidParameter(f"no such folder: {path.parent}")
    frame = _frame(_fetch(conn, spec, progress), spec)
    if suffix in TABLES:
        _write_table(frame, path, spec)
    elif suffix == ".zip":
        _write_zip(frame, path, spec)
    else:
        _write_vector(frame, path, spec, DRIVERS[suffix])
    return ExportResult(kind=spec.name, rows=len(frame), seconds=time.perf_counter() - started)
