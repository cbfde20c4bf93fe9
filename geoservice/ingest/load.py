"""Writing validated rows into the database: fast, all-or-nothing, and readers never wait more than a moment.

Everything happens in the caller's transaction.

Rows travel by ``COPY … FROM STDIN (FORMAT csv)`` (psycopg2 ``copy_expert``), geometries as hex EWKB, which
PostGIS reads without a parse step. A background thread serialises the next chunk while the server digests the
current one.

**Points and streets** (nothing references them) are written one of two ways:

- ``replace``: the rows are copied into a new table built aside — ``LIKE`` the live one, so with its columns,
  defaults, identity, CHECK constraints and comments, in a schema of this import's own
  (``geoservice_import_<backend pid>``) — then its keys and indexes are built in one pass each, it is analysed and,
  for streets, split and given its routing topology (the staging schema comes first in the search path while
  :mod:`geoservice.ingest.topology` runs, so the ``street`` it names is the new table). Readers go on reading the
  live table all that time. Then the **swap**, the only moment a reader can wait: take the live table's
  ``ACCESS EXCLUSIVE`` lock (in attempts of ``SWAP_LOCK_TIMEOUT_MS``, so a long query holding the table never
  makes the lock request itself queue the readers behind it for longer than that), give the new table what hangs on
  the old one and ``LIKE`` does not copy — owner, grants (table, columns, identity sequence), triggers, row
  security policies, comment, storage options — drop the old table and move the new one into its place under the
  same names (table, keys, indexes, constraints, sequence). A few catalogue statements: milliseconds; the caller's
  commit follows. The swapped-in table is a new relation with the old one's grants copied, so the read-only role
  keeps reading it; the statement triggers of migration 0002 move the data version in the same transaction (a
  zero-row ``DELETE`` on the live table fires them just before the swap, before its lock is taken). Ids go on from
  the live table's sequence. Edits committed to the layer while the import ran are replaced with it, as the word
  says. A table that something else depends on (a view, another table's foreign key, a publication) cannot be
  dropped, so it is replaced in place instead: ``DELETE`` and ``COPY`` under a ``ROW EXCLUSIVE`` lock, which
  readers never wait for either (they see the old rows until the commit), only slower.
- ``append``: copied straight into the live table with its indexes in place, under ``ROW EXCLUSIVE``: readers do not
  wait and see the old rows until the commit, edits are not lost, and any row the database refuses aborts the
  whole ``COPY``. (Dropping the indexes for the load, as earlier versions did, locks readers out for all of it.)
  Growing the indexes row by row costs 2-3 times their build, so a big append to an *empty* layer (a city's first
  import) is built aside and swapped in like a replace — after checking, under the swap's lock, that the layer is
  still empty; if rows were added meanwhile, the staged rows are appended to them instead.

Districts, subdistricts, communities, grids and squads (the tables with an upsert key in the catalogue: referenced
by other tables, or keyed by their code) are staged in a temporary table and upserted on that key; ``replace``
then deletes the rows the file no longer has — and refuses when some other row still points at one of them,
naming it. These are row-level writes as well: readers do not wait.

**One import of a kind at a time**: :func:`hold_import_lock` takes a transaction-level advisory lock per table;
a second import of the same kind is refused at once with :class:`ImportBusy`, naming the one that runs (since
when, pid, application name, user). Imports of different kinds run side by side.
"""

from __future__ import annotations

import io
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.csv as pa_csv
import shapely
from sqlalchemy.engine import Connection

from geoservice import catalogue
from geoservice.errors import GeoserviceError, InvalidParameter
from geoservice.ingest.kinds import KindSpec

Progress = Callable[[str, int, int], None]
CHUNK_ROWS = 50_000
# From this many new rows (and at least as many as the table keeps), an append analyses the table afterwards.
BULK_ROWS = 20_000
STAGE = "geoservice_ingest_stage"
# The swap asks for the live table's exclusive lock this long at a time: while the request waits (for a query
# that still reads the table) new readers queue behind it, so each attempt is short and they are let through in
# between. It keeps trying for SWAP_WAIT_S (a reader's statement timeout ends far sooner).
SWAP_LOCK_TIMEOUT_MS = 50
SWAP_WAIT_S = 300.0
# Advisory lock keys: (namespace, table). crc32 is stable across processes and versions, unlike hash().
IMPORT_LOCK_NAMESPACE = 0x67656F69  # "geoi"


class ImportBusy(GeoserviceError):
    """Another import of the same kind is running: this one is refused at once and writes nothing."""

    status = 409
    code = "ImportRunning"
    retry_after = 60


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Writing:
    """How to write an import's rows.

    Attributes:
        replace: replace the layer (else append to it).
        progress: called with (stage, done, total) while rows are written.
        derive: run once the rows are in, on the table that holds them (the staged one when it is swapped in):
            the street network. Its result is returned with the counts.
        swap: put a staged table in the live one's place; False (a dry run) builds everything and leaves the live
            table as it is.
    """

    replace: bool
    progress: Progress | None = None
    derive: Callable[[], Any] = _nothing
    swap: bool = True


@dataclass
class LoadCounts:
    """What the load did."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0


# -- one import of a kind at a time ---------------------------------------------------------------------------

def _lock_key(table: str) -> int:
    return zlib.crc32(table.encode()) & 0x7FFFFFFF


def hold_import_lock(conn: Connection, spec: KindSpec) -> None:
    """Hold the import lock of ``spec``'s table until the caller's transaction ends, or refuse at once.

    The session's ``application_name`` says ``… import <kind>`` meanwhile, so ``pg_stat_activity`` (and the
    message another import gets) tells what runs.

    Raises:
        ImportBusy: another session holds the lock; the message names it (start time, pid, application name, user).
    """
    key = _lock_key(spec.table)
    got = conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock(%s, %s)", (IMPORT_LOCK_NAMESPACE, key)).scalar()
    if not got:
        holder = conn.exec_driver_sql("""
            SELECT a.pid, to_char(coalesce(a.xact_start, a.backend_start), 'HH24:MI:SS'), a.application_name,
                   a.usename
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database
                                                                         WHERE datname = current_database())
              AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2
        """, (IMPORT_LOCK_NAMESPACE, key)).first()
        who = "by another session"
        if holder is not None:
            # Another role's session may hide some of these from us (pg_stat_activity): say what we see.
            pid, started, application, user = holder
            who = (f"started {started or 'at a time not shown'} by pid {pid} / application_name "
                   f"{application or '(none)'!r}, user {user or '(not shown)'}")
        raise ImportBusy(f"another import of {spec.name} is running ({who}); this one was refused and wrote "
                         f"nothing: run it again when that one has finished")
    conn.exec_driver_sql("SELECT set_config('application_name', left(current_setting('application_name') || %s, 63), "
                         "true)", (f" import {spec.name}",))


# -- rows as COPY CSV ---------------------------------------------------------------------------------------------

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


# Each byte as its two upper-case hex digits, read as one little-endian uint16 (first digit first in memory).
_HEX_DIGITS = np.array([ord(f"{b:02X}"[0]) | ord(f"{b:02X}"[1]) << 8 for b in range(256)], dtype="<u2")
# EWKB of a 2-D point with an SRID: byte order, type (Point | has-SRID flag), SRID, x, y — 25 bytes, packed.
_EWKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4"), ("x", "<f8"), ("y", "<f8")])


def _hex_ewkb(geoms: np.ndarray) -> pa.Array:
    """Hex EWKB with SRID 4326 of each geometry.

    Points (all a big file of points holds) are written from their coordinates by numpy, without making a shapely
    object per row: several times faster than ``set_srid`` + ``to_wkb``, which other geometries go through.
    """
    count = len(geoms)
    if count and (shapely.get_type_id(geoms) == 0).all() and not (shapely.is_empty(geoms).any()
                                                                  or shapely.has_z(geoms).any()):
        records = np.empty(count, _EWKB_POINT)
        records["order"], records["type"], records["srid"] = 1, 0x20000001, catalogue.SRID
        xy = shapely.get_coordinates(geoms)
        records["x"], records["y"] = xy[:, 0], xy[:, 1]
        digits = _HEX_DIGITS[records.view(np.uint8)]
        width = 2 * _EWKB_POINT.itemsize
        offsets = np.arange(0, width * (count + 1), width, dtype=np.int64)
        return pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(digits))
    return pa.array(shapely.to_wkb(shapely.set_srid(geoms, catalogue.SRID), hex=True, include_srid=True),
                    type=pa.large_string())


def _serialise(chunk: pd.DataFrame, columns: list[str]) -> bytes:
    """One chunk as COPY CSV bytes (Arrow's C++ CSV writer: several times faster than pandas' for a million rows)."""
    out = pd.DataFrame({c: chunk[c] for c in columns if c != "geom"}, index=chunk.index)
    if "amenities" in out.columns:
        # PostgreSQL array literals; the codes are plain identifiers (checked), so need no quoting.
        literals = {a: "{" + ",".join(a) + "}" for a in pd.unique(out["amenities"])}
        out["amenities"] = out["amenities"].map(literals)
    table = pa.Table.from_pandas(out, preserve_index=False)
    if "geom" in columns:
        table = table.append_column("geom", _hex_ewkb(chunk["geom"].to_numpy()))
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
        try:
            return self._read(size)
        except BaseException as exc:
            # The producer's error, or an interruption (Ctrl-C) while waiting for it: the driver turns either into
            # "COPY failed", so the caller raises this instead.
            self.error = exc
            raise

    def _read(self, size: int) -> bytes:
        while not self._buffer:
            data, count = self._queue.get()
            if isinstance(data, BaseException):
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
    # The geometry is the last column _serialise writes.
    ordered = [c for c in columns if c != "geom"] + (["geom"] if "geom" in columns else [])
    quoted = ", ".join(f'"{c}"' for c in ordered)
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


# -- points and streets -------------------------------------------------------------------------------------------

def _quoted(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


def _scalar(cursor, sql: str, params: tuple = ()) -> Any:
    cursor.execute(sql, params)
    row = cursor.fetchone()
    return row[0] if row else None


def _dependents(cursor, oid: int) -> list[str]:
    """What outside the table depends on it: a view, another table's foreign key, a publication, a rule ….

    Dropping the table would take those along, so it cannot be swapped. (Its own constraints, triggers and policies
    depend on its columns too: those the swap carries over.)
    """
    cursor.execute("""
        SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
        WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s AND d.deptype = 'n'
          AND NOT (d.classid = 'pg_constraint'::regclass
                   AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = %(oid)s AND contype <> 'f'))
          AND NOT (d.classid = 'pg_policy'::regclass
                   AND d.objid IN (SELECT oid FROM pg_policy WHERE polrelid = %(oid)s))
          AND NOT (d.classid = 'pg_trigger'::regclass
                   AND d.objid IN (SELECT oid FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal))
        UNION
        SELECT 'publication ' || p.pubname FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
        WHERE r.prrelid = %(oid)s
        UNION
        SELECT 'inheriting table ' || inhrelid::regclass FROM pg_inherits WHERE inhparent = %(oid)s
        ORDER BY 1
    """, {"oid": oid})
    return [row[0] for row in cursor.fetchall()]


def _on_table(definition: str, live: str, stage: str) -> str:
    """A CREATE INDEX/TRIGGER definition of the live table, made for the staged one."""
    for name in (f"public.{live}", f'public."{live}"', live):
        if f" ON {name} " in definition:
            return definition.replace(f" ON {name} ", f" ON {stage} ", 1)
    raise RuntimeError(f"cannot find the table {live} in {definition!r}")  # pragma: no cover (PostgreSQL's format)


def _sequence(cursor, qualified: str) -> str | None:
    return _scalar(cursor, "SELECT pg_get_serial_sequence(%s, 'id')", (qualified,))


class _Layer:
    """Where the rows of one points or streets import go: a table built aside (then swapped in), or the live one.

    ``target`` is the table to COPY into. After the COPY, :meth:`finish` builds the staged table's keys and indexes
    and runs ``derive`` (the street network) on whichever table holds the new rows; :meth:`swap` puts a staged
    table in the live one's place.

    A big append to an empty layer (a city's first import) is built aside and swapped in too, as fast as a
    replace; should rows have been added to the layer meanwhile, the staged rows are appended to it instead
    (:meth:`append_staged`).
    """

    def __init__(self, cursor, spec: KindSpec, *, replace: bool, expected: int) -> None:
        self.cursor, self.spec, self.replace = cursor, spec, replace
        self.table = spec.table
        self.live = f"public.{self.table}"
        self.oid = _scalar(cursor, "SELECT %s::regclass::oid", (self.live,))
        self.present = _scalar(cursor, f"SELECT count(*) FROM {self.live}")
        self.schema: str | None = None
        aside = replace or (self.present == 0 and expected >= BULK_ROWS)
        self.kept_out = _dependents(cursor, self.oid) if aside else []
        if aside and not self.kept_out:
            self._create_stage()
        elif replace:
            cursor.execute(f"DELETE FROM {self.live}")
        self.target = _quoted(self.schema, self.table) if self.schema else self.live

    @property
    def staged(self) -> bool:
        """Whether the rows go into a table built aside."""
        return self.schema is not None

    def _create_stage(self) -> None:
        cursor = self.cursor
        self.schema = f"geoservice_import_{_scalar(cursor, 'SELECT pg_backend_pid()')}"
        cursor.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        cursor.execute(f'CREATE SCHEMA "{self.schema}"')
        stage = _quoted(self.schema, self.table)
        # Columns, NOT NULL, defaults, identity, generated columns, CHECK constraints, comments, storage and
        # extended statistics; keys and indexes are built after the COPY, in one pass each (for the geography GiST,
        # whose operator class cannot sort, growing it during the COPY was tried: 1.5-2x the CPU of the build).
        cursor.execute(f"CREATE TABLE {stage} (LIKE {self.live} INCLUDING ALL EXCLUDING INDEXES)")
        live_sequence, staged_sequence = _sequence(cursor, self.live), _sequence(cursor, stage)
        if live_sequence and staged_sequence:
            # New rows' ids go on after every id the live table has handed out.
            cursor.execute(f"SELECT setval(%s, last_value, is_called) FROM {live_sequence}", (staged_sequence,))

    def finish(self, *, rows: int, derive: Callable[[], Any]) -> Any:
        """Keys, indexes and statistics of a staged table, then ``derive`` on the table that has the new rows."""
        cursor = self.cursor
        if not self.staged:
            if rows >= BULK_ROWS and rows >= self.present:
                cursor.execute(f"ANALYZE {self.live}")
            self._advance_sequence(self.live)
            return derive()
        stage = _quoted(self.schema, self.table)
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cursor.execute("""
            SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = %s AND contype IN ('p', 'u', 'x', 'f') ORDER BY contype DESC, conname
        """, (self.oid,))
        for name, definition in cursor.fetchall():
            cursor.execute(f'ALTER TABLE {stage} ADD CONSTRAINT "{name}" {definition}')
        cursor.execute("""
            SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
            WHERE i.indrelid = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            ORDER BY i.indexrelid::regclass::text
        """, (self.oid,))
        for (definition,) in cursor.fetchall():
            cursor.execute(_on_table(definition, self.table, stage))
        cursor.execute(f"ANALYZE {stage}")
        self._advance_sequence(stage)
        # The derived data is computed on the new table: it is what `street` names while the staging schema comes
        # first in the search path.
        path = _scalar(cursor, "SELECT current_setting('search_path')")
        cursor.execute("SELECT set_config('search_path', %s, true)", (f'"{self.schema}", {path}',))
        derived = derive()
        cursor.execute("SELECT set_config('search_path', %s, true)", (path,))
        return derived

    def _advance_sequence(self, table: str) -> None:
        # Ids a file gave: the identity sequence goes on after the highest (never back).
        sequence = _sequence(self.cursor, table)
        if sequence:
            self.cursor.execute(f"""
                SELECT setval(%s, greatest(s.next, (SELECT coalesce(max(id), 0) + 1 FROM {table})), false)
                FROM (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next FROM {sequence}) s
            """, (sequence,))

    # -- the swap -------------------------------------------------------------------------------------------

    def swap(self) -> bool:
        """Put the staged table in the live one's place; see the module docstring.

        Returns False, having changed nothing, when an append finds the live table no longer empty.
        """
        cursor = self.cursor
        self._lock_live()
        if not self.replace and _scalar(cursor, f"SELECT EXISTS (SELECT FROM {self.live})"):
            cursor.execute("ROLLBACK TO SAVEPOINT geoservice_swap")
            cursor.execute("RELEASE SAVEPOINT geoservice_swap")
            return False
        stage = _quoted(self.schema, self.table)
        staged_oid = _scalar(cursor, "SELECT %s::regclass::oid", (stage,))
        self._carry_over(stage, staged_oid)
        live_sequence = _sequence(cursor, self.live)
        cursor.execute(f"DROP TABLE {self.live}")
        cursor.execute(f"ALTER TABLE {stage} SET SCHEMA public")
        staged_sequence = _sequence(cursor, self.live)
        if live_sequence and staged_sequence and staged_sequence != live_sequence:
            name = live_sequence.removeprefix("public.").strip('"')
            cursor.execute(f'ALTER SEQUENCE {staged_sequence} RENAME TO "{name}"')
        cursor.execute(f'DROP SCHEMA "{self.schema}"')
        cursor.execute("RELEASE SAVEPOINT geoservice_swap")
        return True

    def append_staged(self, *, ids: bool, derive: Callable[[], Any]) -> Any:
        """The staged rows appended to the live table (under ROW EXCLUSIVE, like any append), then ``derive`` on it.

        Ids the file gave are kept; others are numbered by the live table's sequence, which the rows added
        meanwhile drew from too.
        """
        cursor = self.cursor
        stage = _quoted(self.schema, self.table)
        cursor.execute("""
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
            WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
              AND (%s OR attname <> 'id')
        """, (stage, ids))
        columns = cursor.fetchone()[0]
        cursor.execute(f"INSERT INTO {self.live} ({columns}) SELECT {columns} FROM {stage}")
        cursor.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
        self.schema = None
        self._advance_sequence(self.live)
        return derive()

    def _lock_live(self) -> None:
        """The live table's ACCESS EXCLUSIVE lock, in short attempts; the data version moved first.

        Returns inside the savepoint ``geoservice_swap``, which the caller releases (or rolls back to let go).

        The zero-row DELETE fires the table's statement triggers (migration 0002: the data version moves in this
        transaction). It comes first because it may wait for another writer's commit, and waiting then holds up
        nobody; inside the savepoint, so that a failed attempt lets go of the version row too (a writer holding
        the table and waiting for that row would otherwise wait for us while we wait for it).
        """
        cursor = self.cursor
        timeout = _scalar(cursor, "SELECT current_setting('lock_timeout')")
        deadline, pause = time.monotonic() + SWAP_WAIT_S, 0.02
        while True:
            cursor.execute("SAVEPOINT geoservice_swap")
            try:
                cursor.execute(f"DELETE FROM {self.live} WHERE false")
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{SWAP_LOCK_TIMEOUT_MS}ms",))
                cursor.execute(f"LOCK TABLE {self.live} IN ACCESS EXCLUSIVE MODE")
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                return
            except psycopg2.errors.LockNotAvailable:
                cursor.execute("ROLLBACK TO SAVEPOINT geoservice_swap")
                if time.monotonic() > deadline:
                    cursor.execute("SELECT string_agg(DISTINCT pid::text, ', ') FROM pg_locks WHERE relation = %s "
                                   "AND granted AND pid <> pg_backend_pid()", (self.oid,))
                    raise InvalidParameter(
                        f"the {self.table} table was in use by other sessions (pids {cursor.fetchone()[0]}) for "
                        f"{SWAP_WAIT_S:g} s, so the new {self.spec.name} could not be swapped in; nothing was "
                        "written") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def _carry_over(self, stage: str, staged_oid: int) -> None:
        """Give the staged table what hangs on the live one and LIKE does not copy."""
        cursor = self.cursor
        cursor.execute("""
            SELECT l.relowner <> s.relowner, l.relowner::regrole::text, obj_description(l.oid, 'pg_class'),
                   l.reloptions, l.relrowsecurity, l.relforcerowsecurity
            FROM pg_class l, pg_class s WHERE l.oid = %s AND s.oid = %s
        """, (self.oid, staged_oid))
        other_owner, owner, comment, options, row_security, forced = cursor.fetchone()
        if other_owner:
            cursor.execute(f"ALTER TABLE {stage} OWNER TO {owner}")
        if comment is not None:
            cursor.execute(f"COMMENT ON TABLE {stage} IS %s", (comment,))
        if options:
            cursor.execute(f"ALTER TABLE {stage} SET ({', '.join(options)})")
        self._copy_grants(self.oid, staged_oid, stage)
        live_sequence, staged_sequence = _sequence(cursor, self.live), _sequence(cursor, stage)
        if live_sequence and staged_sequence:
            self._copy_grants(_scalar(cursor, "SELECT %s::regclass::oid", (live_sequence,)),
                              _scalar(cursor, "SELECT %s::regclass::oid", (staged_sequence,)), staged_sequence,
                              what="SEQUENCE")
        cursor.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal "
                       "ORDER BY tgname", (self.oid,))
        for (definition,) in cursor.fetchall():
            cursor.execute(_on_table(definition, self.table, stage))
        if row_security:
            cursor.execute(f"ALTER TABLE {stage} ENABLE ROW LEVEL SECURITY")
        if forced:
            cursor.execute(f"ALTER TABLE {stage} FORCE ROW LEVEL SECURITY")
        cursor.execute("""
            SELECT format('CREATE POLICY %%I ON {stage} AS %%s FOR %%s TO %%s', policyname, permissive, cmd,
                          (SELECT string_agg(CASE WHEN r = 'public' THEN 'PUBLIC' ELSE quote_ident(r) END, ', ')
                           FROM unnest(roles) r))
                   || coalesce(' USING (' || qual || ')', '') || coalesce(' WITH CHECK (' || with_check || ')', '')
            FROM pg_policies WHERE schemaname = 'public' AND tablename = %s ORDER BY policyname
        """.replace("{stage}", stage.replace("%", "%%")), (self.table,))
        for (statement,) in cursor.fetchall():
            cursor.execute(statement)

    def _copy_grants(self, live_oid: int, staged_oid: int, target: str, *, what: str = "TABLE") -> None:
        """The live relation's privileges (and its columns'), exactly, on the staged one."""
        cursor = self.cursor
        cursor.execute("""
            SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
            FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %s AND a.grantee <> c.relowner
        """, (staged_oid,))
        for (grantee,) in cursor.fetchall():  # default privileges may have given the new table some already
            cursor.execute(f"REVOKE ALL ON {what} {target} FROM {grantee}")
        cursor.execute("""
            SELECT a.privilege_type, NULL, a.is_grantable,
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, 0, a.ordinality
            FROM pg_class c, aclexplode(c.relacl) WITH ORDINALITY a
            WHERE c.oid = %(oid)s AND a.grantee <> c.relowner
            UNION ALL
            SELECT a.privilege_type, quote_ident(t.attname), a.is_grantable,
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, t.attnum, a.ordinality
            FROM pg_attribute t, aclexplode(t.attacl) WITH ORDINALITY a
            WHERE t.attrelid = %(oid)s AND t.attnum > 0 AND NOT t.attisdropped
            ORDER BY 5, 6  -- granted in the order the lists hold them, so the lists come out the same
        """, {"oid": live_oid})
        for privilege, column, grantable, grantee, _, _ in cursor.fetchall():
            columns = f" ({column})" if column else ""
            option = " WITH GRANT OPTION" if grantable else ""
            cursor.execute(f"GRANT {privilege}{columns} ON {what} {target} TO {grantee}{option}")


def _write_layer(cursor, spec: KindSpec, chunks: Iterator[pd.DataFrame], *, columns: list[str], expected: int,
                 writing: Writing) -> tuple[LoadCounts, Any]:
    """Points or streets: see the module docstring."""
    layer = _Layer(cursor, spec, replace=writing.replace, expected=expected)
    written = [0]

    def counted() -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            written[0] += len(chunk)
            yield chunk

    _copy(cursor, layer.target, columns, counted(), writing.progress, expected)
    derived = layer.finish(rows=written[0], derive=writing.derive)
    if layer.staged and writing.swap and not layer.swap():
        # Rows were added to the empty layer while this import ran: append to them instead.
        derived = layer.append_staged(ids="id" in columns, derive=writing.derive)
    return LoadCounts(inserted=written[0], deleted=layer.present if writing.replace else 0), derived


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


def _refused(spec: KindSpec, exc: psycopg2.Error) -> InvalidParameter:
    message = (exc.pgerror or str(exc)).strip().splitlines()[0].removeprefix("ERROR:").strip()
    return InvalidParameter(f"the database refused the {spec.name}: {message}; nothing was written")


def stream_rows(conn: Connection, spec: KindSpec, chunks: Iterator[pd.DataFrame], *, columns: list[str],
                expected: int, writing: Writing) -> tuple[LoadCounts, Any]:
    """Points or streets arriving chunk by chunk (read and validated while earlier chunks are copied).

    ``columns`` are fixed up front (from the file's schema); ``expected`` is the file's feature count (for the
    progress bar). Returns the counts and what ``writing.derive`` gave. An exception raised by ``chunks`` ends the
    COPY and is raised here; the caller's transaction must then be rolled back.
    """
    cursor = conn.connection.driver_connection.cursor()
    try:
        return _write_layer(cursor, spec, chunks, columns=columns, expected=expected, writing=writing)
    except psycopg2.Error as exc:
        raise _refused(spec, exc) from exc
    finally:
        cursor.close()


def load_rows(conn: Connection, spec: KindSpec, rows: pd.DataFrame, *, writing: Writing) -> tuple[LoadCounts, Any]:
    """Write validated ``rows`` of ``spec`` in the caller's transaction; the counts and what ``writing.derive`` gave.

    Raises:
        InvalidParameter: the database refused the rows (a constraint the validation did not foresee), or
            ``replace`` would orphan rows of another table. The caller's transaction must then be rolled back.
    """
    cursor = conn.connection.driver_connection.cursor()
    try:
        if spec.catalogue_table.upsert_key is not None:
            counts = _load_upsert(cursor, spec, rows, replace=writing.replace, progress=writing.progress)
            return counts, writing.derive()
        if "id" in rows.columns:
            rows = _fill_ids(cursor, spec.table, rows, writing.replace)
        return _write_layer(cursor, spec, _chunks_of(rows), columns=_db_columns(spec, rows), expected=len(rows),
                            writing=writing)
    except psycopg2.Error as exc:
        raise _refused(spec, exc) from exc
    finally:
        cursor.close()
