"""Writing validated rows into the database: fast, inside the caller's transaction, all-or-nothing.

Rows travel by ``COPY … FROM STDIN (FORMAT csv)`` (psycopg2 ``copy_expert``), geometries as hex EWKB, which
PostGIS reads without a parse step. A background thread serialises the next chunk while the server digests the
current one. Points and streets — which nothing references — are copied straight into their table; with
``replace`` the table is emptied first (TRUNCATE, transactional in PostgreSQL). A bulk load drops the table's
secondary indexes and builds them again afterwards, which is several times faster than updating them row by row;
DDL is transactional too, so a failure still leaves the database as it was.

Districts, subdistricts, communities, grids and squads (the tables with an upsert key in the catalogue: referenced
by other tables, or keyed by their code) are staged in a temporary table and upserted on that key; ``replace``
then deletes the rows the file no longer has — and refuses when some other row still points at one of them,
naming it.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
import shapely
from sqlalchemy.engine import Connection

from geoservice import catalogue
from geoservice.errors import InvalidParameter
from geoservice.ingest.kinds import KindSpec

Progress = Callable[[str, int, int], None]
CHUNK_ROWS = 50_000
# From this many new rows (and at least as many as the table keeps), rebuilding indexes beats updating them.
BULK_ROWS = 20_000
STAGE = "geoservice_ingest_stage"



@dataclass
class LoadCounts:
    """What the load did."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0


def _db_columns(spec: KindSpec, rows: pd.DataFrame) -> list[str]:
    """The columns to copy: the kind's fields that have a value in some row, and the geometry.

    An empty column is left to the database's default (NULL, status 'open', no amenities, a new id).
    """
    columns = [c for c in spec.columns if c in rows.columns and (c in (spec.key, "code") or _has_values(rows[c]))]
    columns = [c for c in columns if c != "id" or rows["id"].notna().any()]
    return [*columns, "geom"] if spec.geometry else columns


def _has_values(values: pd.Series) -> bool:
    if values.dtype == object and len(values) and isinstance(values.iat[0], tuple):
        return bool(values.map(len).any())
    return bool(values.notna().any())


def _serialise(chunk: pd.DataFrame, columns: list[str]) -> bytes:
    """One chunk as COPY CSV bytes (Arrow's C++ CSV writer: several times faster than pandas' for a million rows)."""
    out = pd.DataFrame({c: chunk[c] for c in columns if c != "geom"}, index=chunk.index)
    if "amenities" in out.columns:
        # PostgreSQL array literals; the codes are plain identifiers (checked), so need no quoting.
        literals = {a: "{" + ",".join(a) + "}" for a in pd.unique(out["amenities"])}
        out["amenities"] = out["amenities"].map(literals)
    if "geom" in columns:
        out["geom"] = shapely.to_wkb(shapely.set_srid(chunk["geom"].to_numpy(), 4326), hex=True, include_srid=True)
    table = pa.Table.from_pandas(out, preserve_index=False)
    sink = pa.BufferOutputStream()
    # Nulls are written unquoted and empty, which COPY's CSV format reads as NULL; strings are quoted.
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue().to_pybytes()


def _chunks_of(rows: pd.DataFrame) -> Iterator[pd.DataFrame]:
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows.iloc[start:start + CHUNK_ROWS]


class _CopySource(io.RawIOBase):
    """A file-like object for ``copy_expert``: chunks serialised by a background thread, progress as read.

    The thread runs whatever produces the chunks (for a streamed import: reading and validating the file), so
    that work overlaps with the server digesting the previous chunk. An exception there ends the COPY; it is kept
    in ``error`` for the caller to raise instead of the driver's "COPY failed".
    """

    def __init__(self, chunks: Iterator[pd.DataFrame], columns: list[str], progress: Progress | None,
                 total: int) -> None:
        super().__init__()
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._buffer = memoryview(b"")
        self._done = 0
        self._total = total
        self._progress = progress
        self.error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(chunks, columns), daemon=True)
        self._thread.start()

    def _put(self, item: tuple) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, chunks: Iterator[pd.DataFrame], columns: list[str]) -> None:
        try:
            for chunk in chunks:
                if len(chunk) and not self._put((_serialise(chunk, columns), len(chunk))):
                    return
            self._put((b"", 0))
        except Exception as exc:  # noqa: BLE001 (handed to the reading thread, which raises it)
            self._put((exc, 0))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            data, count = self._queue.get()
            if isinstance(data, BaseException):
                self.error = data
                raise data
            if not data:
                return b""
            self._buffer = memoryview(data)
            self._done += count
            if self._progress:
                self._progress("writing", self._done, max(self._total, self._done))
        size = len(self._buffer) if size is None or size < 0 else size
        # A memoryview slices without copying the rest of the chunk each time.
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return piece.tobytes()

    def stop(self) -> None:
        """The COPY failed: tell the producing thread to stop and wait for it."""
        self._stopped.set()
        self._thread.join()


def _copy(cursor, target: str, columns: list[str], chunks: Iterator[pd.DataFrame], progress: Progress | None,
          total: int) -> None:
    quoted = ", ".join(f'"{c}"' for c in columns)
    source = _CopySource(chunks, columns, progress, total)
    try:
        cursor.copy_expert(f"COPY {target} ({quoted}) FROM STDIN WITH (FORMAT csv)", source, size=1 << 20)
    except psycopg2.Error:
        source.stop()
        if source.error is not None:
            raise source.error from None
        raise
    except BaseException:
        source.stop()
        raise


def _secondary_indexes(cursor, table: str) -> list[tuple[str, str]]:
    """Indexes that back no constraint (so they can be dropped and made again from their definition)."""
    cursor.execute("""
        SELECT i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
        WHERE t.relname = %s AND t.relnamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
        ORDER BY i.relname
    """, (table,))
    return cursor.fetchall()


def _drop_indexes(cursor, table: str) -> list[tuple[str, str]]:
    indexes = _secondary_indexes(cursor, table)
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return indexes


def _create_indexes(cursor, indexes: list[tuple[str, str]]) -> None:
    if indexes:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _name, definition in indexes:
        cursor.execute(definition)


def _fill_ids(cursor, table: str, rows: pd.DataFrame, replace: bool) -> pd.DataFrame:
    """Rows without an id (when others have one) get ids after the highest in the file and the table."""
    missing = rows["id"].isna()
    if not missing.any() or missing.all():
        return rows
    cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
    start = max(int(rows["id"].max()), 0 if replace else int(cursor.fetchone()[0])) + 1
    rows = rows.copy()
    rows.loc[missing, "id"] = np.arange(start, start + int(missing.sum()))
    return rows


def _load_plain(cursor, spec: KindSpec, rows: pd.DataFrame, *, replace: bool, progress: Progress | None) -> LoadCounts:
    """Points and streets: nothing references them, so copy straight into the table."""
    table = spec.table
    counts = LoadCounts()
    if replace:
        cursor.execute(f"SELECT count(*) FROM {table}")
        counts.deleted = int(cursor.fetchone()[0])
        cursor.execute(f"TRUNCATE {table}")
        kept = 0
    else:
        cursor.execute(f"SELECT count(*) FROM {table}")
        kept = int(cursor.fetchone()[0])
    rows = _fill_ids(cursor, table, rows, replace)
    bulk = len(rows) >= BULK_ROWS and len(rows) >= kept
    dropped = _drop_indexes(cursor, table) if bulk else []
    _copy(cursor, table, _db_columns(spec, rows), _chunks_of(rows), progress, len(rows))
    _create_indexes(cursor, dropped)
    cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) "
                   f"FROM {table}")
    if bulk:
        cursor.execute(f"ANALYZE {table}")
    counts.inserted = len(rows)
    return counts


def _refuse_orphans(cursor, spec: KindSpec) -> None:
    # Children that would lose their parent when ``replace`` deletes a row.
    for child_table, prop in catalogue.references_to(spec.table):
        child, column, ours = child_table.name, prop.name, prop.references.split(".")[1]
        cursor.execute(f"""
            SELECT t.{spec.key}, count(*) FROM {child} c JOIN {spec.table} t ON t.{ours} = c.{column}
            WHERE t.{spec.key} NOT IN (SELECT {spec.key} FROM {STAGE})
            GROUP BY t.{spec.key} ORDER BY t.{spec.key} LIMIT 5
        """)
        orphans = cursor.fetchall()
        if orphans:
            named = ", ".join(f"{key} ({n} {child})" for key, n in orphans)
            raise InvalidParameter(f"--replace would remove {spec.table} rows that other rows still use: {named}; "
                                   f"keep them in the file, or replace the {child} rows first")


def _stage_select(spec: KindSpec, columns: list[str]) -> tuple[str, str]:
    """Target columns and the SELECT that turns staged text into them."""
    table = spec.catalogue_table
    stored = {p.name: p for p in table.properties if p.stored_as}
    targets, values = [], []
    for column in columns:
        if column in stored:
            # A value a file names, stored as another column (a grid's squad by name → squad_id).
            targets.append(stored[column].stored_as)
            values.append(stored[column].store_sql.format(value=f"s.{column}"))
        elif column == "geom":
            targets.append("geom")
            values.append("s.geom::geometry")
        else:
            targets.append(column)
            values.append(f"s.{column}")
    return ", ".join(targets), ", ".join(values)


def _load_upsert(cursor, spec: KindSpec, rows: pd.DataFrame, *, replace: bool, progress: Progress | None) -> LoadCounts:
    """Referenced kinds: stage, upsert on the key, and (replace) delete what the file no longer has."""
    columns = _db_columns(spec, rows)
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGE}")
    typed = ", ".join(f'"{c}" ' + ("bigint" if c == "id" else "text") for c in columns)
    cursor.execute(f"CREATE TEMP TABLE {STAGE} ({typed})")
    _copy(cursor, STAGE, columns, _chunks_of(rows), progress, len(rows))
    counts = LoadCounts()
    if replace:
        _refuse_orphans(cursor, spec)
        cursor.execute(f"DELETE FROM {spec.table} WHERE {spec.key} NOT IN (SELECT {spec.key} FROM {STAGE})")
        counts.deleted = cursor.rowcount
    targets, values = _stage_select(spec, columns)
    updates = ", ".join(f"{t} = EXCLUDED.{t}" for t in targets.split(", ") if t not in (spec.key, "id"))
    cursor.execute(f"""
        INSERT INTO {spec.table} ({targets}) SELECT {values} FROM {STAGE} s
        ON CONFLICT ({spec.key}) DO UPDATE SET {updates}
        RETURNING (xmax = 0)
    """)
    flags = [row[0] for row in cursor.fetchall()]
    counts.inserted, counts.updated = sum(flags), len(flags) - sum(flags)
    if "id" in columns:
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{spec.table}', 'id'), coalesce(max(id), 0) + 1, "
                       f"false) FROM {spec.table}")
    cursor.execute(f"DROP TABLE pg_temp.{STAGE}")
    return counts


def stream_rows(conn: Connection, spec: KindSpec, chunks: Iterator[pd.DataFrame], *, columns: list[str],
                expected: int, replace: bool, progress: Progress | None = None) -> LoadCounts:
    """Points or streets arriving chunk by chunk (read and validated while earlier chunks are copied).

    ``columns`` are fixed up front (from the file's schema); ``expected`` is the file's feature count, which
    decides the bulk path. An exception raised by ``chunks`` ends the COPY and is raised here; the caller's
    transaction must then be rolled back.
    """
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(f"SELECT count(*) FROM {spec.table}")
        present = int(cursor.fetchone()[0])
        counts = LoadCounts(deleted=present if replace else 0)
        if replace:
            cursor.execute(f"TRUNCATE {spec.table}")
        bulk = expected >= BULK_ROWS and expected >= (0 if replace else present)
        dropped = _drop_indexes(cursor, spec.table) if bulk else []
        written = [0]

        def counted() -> Iterator[pd.DataFrame]:
            for chunk in chunks:
                written[0] += len(chunk)
                yield chunk

        _copy(cursor, spec.table, columns, counted(), progress, expected)
        _create_indexes(cursor, dropped)
        if bulk:
            cursor.execute(f"ANALYZE {spec.table}")
        counts.inserted = written[0]
        return counts
    except psycopg2.Error as exc:
        message = (exc.pgerror or str(exc)).strip().splitlines()[0].removeprefix("ERROR:").strip()
        raise InvalidParameter(f"the database refused the {spec.name}: {message}; nothing was written") from exc
    finally:
        cursor.close()


def load_rows(conn: Connection, spec: KindSpec, rows: pd.DataFrame, *, replace: bool,
              progress: Progress | None = None) -> LoadCounts:
    """Write validated ``rows`` of ``spec`` in the caller's transaction.

    Raises:
        InvalidParameter: the database refused the rows (a constraint the validation did not foresee), or
            ``replace`` would orphan rows of another table. The caller's transaction must then be rolled back.
    """
    cursor = conn.connection.driver_connection.cursor()
    try:
        if spec.catalogue_table.upsert_key is None:
            return _load_plain(cursor, spec, rows, replace=replace, progress=progress)
        return _load_upsert(cursor, spec, rows, replace=replace, progress=progress)
    except psycopg2.Error as exc:
        message = (exc.pgerror or str(exc)).strip().splitlines()[0].removeprefix("ERROR:").strip()
        raise InvalidParameter(f"the database refused the {spec.name}: {message}; nothing was written") from exc
    finally:
        cursor.close()
