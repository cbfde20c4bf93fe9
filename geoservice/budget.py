"""Bounded work for every request: a statement timeout per class of request, and a few slots for analyses.

A public service must not let one URL hold the database for minutes, nor let eight whole-city analyses take every
worker thread while a farmer's nearest-point lookup waits. So:

- every request belongs to a class — ``lookup`` (nearest, the grid at a spot, search, one feature), ``layer`` (map
  layers and OGC item pages) or ``analysis`` (coverage, grid gaps, service areas) — and its transaction gets that
  class's ``statement_timeout`` (settings ``GEOSERVICE_TIMEOUT_*``); a statement past it is cancelled by PostgreSQL
  and the request answers 503 ``Timeout`` with ``Retry-After``;
- an analysis that must really compute (not served from the results cache) first takes one of
  ``GEOSERVICE_ANALYSIS_SLOTS`` slots. A slot is a transaction-level advisory lock, so the count holds across every
  gunicorn worker and process on the database, and a slot is given back when the request's transaction ends, even
  when the worker dies. With every slot taken the request is refused at once — 503 ``Busy`` with ``Retry-After``
  — instead of queueing: the threads stay free for cheap requests.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import Connection

from geoservice import db
from geoservice.config import Settings
from geoservice.errors import Busy, InvalidParameter

CLASSES = ("lookup", "layer", "analysis")
# Advisory lock keys are (namespace, slot); the namespace is ours alone ("geoS" as an int4).
_SLOT_NAMESPACE = 0x67656F53


def timeout_s(settings: Settings, kind: str) -> float:
    """The statement timeout of a class of request, in seconds."""
    if kind not in CLASSES:
        raise InvalidParameter(f"request class must be one of {', '.join(CLASSES)}, got {kind!r}")
    return {"lookup": settings.timeout_lookup_s, "layer": settings.timeout_layer_s,
            "analysis": settings.timeout_analysis_s}[kind]


def limit(conn: Connection, settings: Settings, kind: str) -> None:
    """Give the connection's current transaction the statement timeout of ``kind``."""
    ms = int(timeout_s(settings, kind) * 1000)
    conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(ms)})


def take_analysis_slot(conn: Connection, settings: Settings) -> int:
    """Take a free analysis slot for the rest of the connection's transaction; its number.

    Raises:
        Busy: every slot is taken.
    """
    for slot in range(settings.analysis_slots):
        if conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:ns, :slot)"),
                        {"ns": _SLOT_NAMESPACE, "slot": slot}).scalar_one():
            return slot
    raise Busy(f"all {settings.analysis_slots} slots for whole-city analyses are taken; try again in a few seconds "
               "(answers already computed are served at once)")


def connection(kind: str) -> Connection:
    """The current request's connection, its transaction bounded by the statement timeout of ``kind``."""
    conn = db.get_connection()
    limit(conn, current_app.config["GEOSERVICE_SETTINGS"], kind)
    return conn
