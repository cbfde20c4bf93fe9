"""Importing one file as one kind: read → CRS → validate → report → write → rebuild what derives from it.

:func:`import_file` runs in the caller's transaction and never commits: the CLI wraps it in one transaction, so an
import either writes every row or — rejected rows (without ``skip_invalid``), a database error, an interruption —
nothing. ``dry_run`` does all the work inside a savepoint and rolls it back, so the counts it reports are the
database's own.

Imports never make readers wait: a replaced layer of points or streets is built aside and swapped in under a lock
held for milliseconds, an append writes rows the readers see only at the commit (:mod:`geoservice.ingest.load`).
Imports of one kind run one at a time: a second is refused at once, naming the first
(:class:`geoservice.ingest.load.ImportBusy`).
"""

from __future__ import annotations

import csv
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.crs import check_metric_crs
from geoservice.errors import InvalidParameter
from geoservice.ingest.kinds import KindSpec, kind_spec
from geoservice.ingest.load import LoadCounts, Progress, Writing, hold_import_lock, load_rows, stream_rows
from geoservice.ingest.readers import SourceTable, StreamInfo, read_source, stream_batches, stream_info, to_wgs84
from geoservice.ingest.topology import rebuild_topology, split_at_intersections
from geoservice.ingest.validate import Context, Issue, explode_lines, validate

REPORT_SUFFIXES = (".csv", ".json")


class ImportRejected(InvalidParameter):
    """Rows were rejected and ``skip_invalid`` was not given: nothing was written."""

    def __init__(self, description: str, issues: list[Issue]) -> None:
        super().__init__(description)
        self.issues = issues


@dataclass(frozen=True, kw_only=True)
class ImportOptions:
    """How to import (the CLI's options; see ``geoservice import --help``)."""

    layer: str | None = None
    crs: str | None = None
    encoding: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    replace: bool = False
    dry_run: bool = False
    repair: bool = False
    skip_invalid: bool = False
    report: Path | None = None
    # The city, from the settings (GEOSERVICE_CITY_CENTER, _CITY_RADIUS_KM, _METRIC_CRS): no defaults of their own.
    city_center: tuple[float, float]
    radius_km: float
    metric_crs: str
    # Points/streets GeoPackage or GeoJSON files from this many features (and without ids) are read, validated
    # and copied batch by batch, so reading and checking overlap with the database's work.
    stream_from_rows: int = 200_000
    batch_rows: int = 50_000


@dataclass
class ImportResult:
    """What an import read, wrote, rejected and repaired."""

    kind: str
    read: int
    written: int
    counts: LoadCounts
    rejected: list[Issue]
    repaired: list[Issue]
    dry_run: bool
    seconds: float
    network: dict | None = None

    @property
    def rows_per_s(self) -> float:
        """Throughput over the whole import (reading included)."""
        return self.read / self.seconds if self.seconds > 0 else float("inf")


def write_report(path: Path, issues: list[Issue]) -> None:
    """Rejections and repairs as CSV (row, field, reason, action) or JSON (a list of such objects)."""
    ordered = sorted(issues, key=lambda i: (i.row, i.field, i.action))
    try:
        if path.suffix.lower() == ".json":
            text = json.dumps([i._asdict() for i in ordered], ensure_ascii=False, indent=1)
            path.write_text(text, encoding="utf-8")
            return
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(Issue._fields)
            writer.writerows(ordered)
    except OSError as exc:
        raise InvalidParameter(f"cannot write the report {path}: {exc.strerror or exc}") from exc


def _context(conn: Connection, spec: KindSpec, options: ImportOptions) -> Context:
    # Only appends can collide with the database: replace empties points/streets and upserts the others.
    existing: frozenset = frozenset()
    if not options.replace:
        existing = frozenset(conn.execute(sa.text(f"SELECT {spec.key} FROM {spec.table}")).scalars())
    parents = None
    if spec.parent:
        parents = frozenset(conn.execute(sa.text(f"SELECT code FROM {spec.parent}")).scalars())
    # A file names a grid's squad; the import stores its id, so the names must exist.
    names_squads = any(p.check == "squad" for p in spec.catalogue_table.properties)
    squads = frozenset(conn.execute(sa.text("SELECT name FROM squad")).scalars()) if names_squads else None
    return Context(city_center=options.city_center, radius_km=options.radius_km, repair=options.repair,
                   existing_keys=existing, parent_codes=parents, squads=squads or frozenset())


def _refusal(issues: list[Issue], total: int, kind: str) -> str:
    rows = len({i.row for i in issues})
    first = issues[0]
    return (f"{rows} of {total} {kind} rejected, nothing was written; first: row {first.row}, {first.field}: "
            f"{first.reason} (--report FILE lists every rejection; --skip-invalid imports the rest)")


def _writing(conn: Connection, spec: KindSpec, options: ImportOptions, progress: Progress | None) -> Writing:
    # The network is rebuilt on the table that holds the new streets, before it replaces the live one.
    return Writing(replace=options.replace, progress=progress, derive=lambda: _rebuild_network(conn, spec, options),
                   swap=not options.dry_run)


def _rebuild_network(conn: Connection, spec: KindSpec, options: ImportOptions) -> dict | None:
    if spec.table != "street":
        return None
    # Imported streets are rarely noded: cut them where they meet, then number the routing nodes again.
    added = split_at_intersections(conn)
    return {**rebuild_topology(conn, metric_crs=options.metric_crs), "split_added": added}


def import_file(conn: Connection, kind: str, path: str | Path, *, options: ImportOptions,
                progress: Progress | None = None) -> ImportResult:
    """Import ``path`` as ``kind`` in the caller's transaction; see the module docstring.

    Args:
        conn: connection inside a transaction (the caller commits, or rolls back on an exception).
        kind: one of ``geoservice.ingest.KINDS`` (districts, subdistricts, communities, grids, squads, streets,
            points).
        path: GeoJSON, GeoPackage, Shapefile (.shp or .zip), CSV, XLSX or OSM PBF (streets, points).
        options: see :class:`ImportOptions`; its city (centre, radius, metric CRS) comes from the settings.
        progress: called with (stage, done, total) while rows are written.

    Returns:
        What was read, written, rejected and repaired, and the routing network's counts after a street import.

    Raises:
        ImportRejected: rows were rejected and ``options.skip_invalid`` is False; nothing was written.
        InvalidParameter: the file cannot be read, its CRS is unknown, it lies outside the city, the metric CRS
            is not meant for the city (the message names the right one), or the database refused the rows.
        ImportBusy: another import of the same kind is running (the message says since when, pid, application).
    """
    # Rows farther than radius_km from the centre are refused below, so a CRS whose area of use holds the centre
    # serves every row that gets in.
    check_metric_crs(options.metric_crs, *options.city_center, what="the city centre")
    started = time.perf_counter()
    spec = kind_spec(kind)
    if options.report is not None and Path(options.report).suffix.lower() not in REPORT_SUFFIXES:
        raise InvalidParameter(f"--report must end in {' or '.join(REPORT_SUFFIXES)}, got {options.report}")
    # One import of a kind at a time: a second is refused now, before it reads anything.
    hold_import_lock(conn, spec)
    info = _streamable(path, spec, options)
    if info is not None:
        return _import_streamed(conn, spec, path, info, options, progress, started)
    source = read_source(path, kind=spec, layer=options.layer, encoding=options.encoding, mapping=options.mapping)
    frame = to_wgs84(source, crs=options.crs, path=path)
    row_numbers = np.arange(source.first_row, source.first_row + len(frame))
    if spec.geometry == "LineString":
        frame, row_numbers = explode_lines(frame, row_numbers)
    checked = validate(frame, spec, row_numbers=row_numbers, ctx=_context(conn, spec, options))
    if options.report is not None:
        write_report(Path(options.report), checked.rejections + checked.repairs)
    if checked.rejections and not options.skip_invalid:
        raise ImportRejected(_refusal(checked.rejections, len(frame), spec.name), checked.rejections)
    rows, writing = checked.rows.drop(columns=["row"]), _writing(conn, spec, options, progress)
    if options.dry_run:
        savepoint = conn.begin_nested()
        try:
            counts, topology = load_rows(conn, spec, rows, writing=writing)
        finally:
            savepoint.rollback()
    else:
        counts, topology = load_rows(conn, spec, rows, writing=writing)
    return ImportResult(kind=spec.name, read=len(frame), written=len(checked.rows), counts=counts,
                        rejected=checked.rejections, repaired=checked.repairs, dry_run=options.dry_run,
                        seconds=time.perf_counter() - started, network=topology)


# -- big files: read, validate and copy batch by batch ------------------------------------------------------

def _streamable(path: str | Path, spec: KindSpec, options: ImportOptions) -> StreamInfo | None:
    # Only appended tables (no upsert key: points, streets) stream; upserts need the whole file.
    if spec.catalogue_table.upsert_key is not None or options.encoding:
        return None
    info = stream_info(path, kind=spec, layer=options.layer, mapping=options.mapping)
    # Ids in the file need the whole file (duplicates, numbering the rest): the one-piece path does that.
    if info is None or info.features < options.stream_from_rows or "id" in info.columns:
        return None
    return info


def _read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """``items`` produced by a thread of its own, up to ``depth`` ahead of the consumer.

    Reading a batch is mostly GDAL and shapely, which let go of the GIL: it overlaps the validation of the batch
    before. An exception while producing is raised in the consumer; a consumer that stops early stops the thread.
    """
    channel: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def put(item: tuple) -> bool:
        while not stopped.is_set():
            try:
                channel.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # noqa: BLE001 (raised in the consumer)
            put((False, exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            more, item = channel.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stopped.set()
        thread.join()


class _Batches:
    """Validated rows, batch by batch.

    After the first rejection (unless skip_invalid) it only collects issues, and when the file is done it raises
    :class:`ImportRejected`, which ends the COPY: nothing is written.
    """

    def __init__(self, spec: KindSpec, path: str | Path, info: StreamInfo, ctx: Context,
                 options: ImportOptions) -> None:
        self.spec, self.path, self.info, self.ctx, self.options = spec, path, info, ctx, options
        self.read = 0
        self.written = 0
        self.rejected: list[Issue] = []
        self.repaired: list[Issue] = []

    def _check(self, source: SourceTable):
        frame = to_wgs84(source, crs=self.options.crs, path=self.path)
        row_numbers = np.arange(source.first_row, source.first_row + len(frame))
        if self.spec.geometry == "LineString":
            frame, row_numbers = explode_lines(frame, row_numbers)
        self.read += len(frame)
        return validate(frame, self.spec, row_numbers=row_numbers, ctx=self.ctx)

    def __iter__(self):
        batches = stream_batches(self.path, self.info, kind=self.spec, mapping=self.options.mapping,
                                 batch_rows=self.options.batch_rows)
        for source in _read_ahead(batches):
            checked = self._check(source)
            self.rejected += checked.rejections
            self.repaired += checked.repairs
            if self.rejected and not self.options.skip_invalid:
                continue
            self.written += len(checked.rows)
            yield checked.rows.drop(columns=["row"])
        if self.options.report is not None:
            write_report(Path(self.options.report), self.rejected + self.repaired)
        if self.rejected and not self.options.skip_invalid:
            raise ImportRejected(_refusal(self.rejected, self.read, self.spec.name), self.rejected)


def _import_streamed(conn: Connection, spec: KindSpec, path: str | Path, info: StreamInfo, options: ImportOptions,
                     progress: Progress | None, started: float) -> ImportResult:
    batches = _Batches(spec, path, info, _context(conn, spec, options), options)
    columns = [*info.columns, "geom"]
    if spec.table == "point" and "status" not in columns:
        columns.insert(0, "status")  # validation fills in 'open'; NULL would break NOT NULL

    def write() -> tuple[LoadCounts, dict | None]:
        return stream_rows(conn, spec, iter(batches), columns=columns, expected=info.features,
                           writing=_writing(conn, spec, options, progress))

    if options.dry_run:
        savepoint = conn.begin_nested()
        try:
            counts, topology = write()
        finally:
            savepoint.rollback()
    else:
        counts, topology = write()
    return ImportResult(kind=spec.name, read=batches.read, written=batches.written, counts=counts,
                        rejected=batches.rejected, repaired=batches.repaired, dry_run=options.dry_run,
                        seconds=time.perf_counter() - started, network=topology)
