"""HTTP validators from the city's data version: ETag / Last-Modified on answers, and 304 Not Modified.

Every answer that reads only what the data version covers (tiles, layers, whole-city analyses, OGC items without
live fields) is the same bytes while the version is the same (``geoservice.results_cache``). Its entity tag is the
version plus whatever else selects the answer (the query, whether the caller may see planned points), so a browser
or a proxy asks again with ``If-None-Match`` and gets an empty 304 — checked *before* the answer is computed, which
is the point: a revalidated tile costs one primary-key read.

The compression layer (``geoservice.compression``) weakens the tag of a gzipped body (the bytes differ from the
plain ones); the comparison here is the weak one (RFC 9110 §13.1.2), so a browser's ``If-None-Match: W/"…"`` still
matches and the 304 passes through compression untouched (it has no body).

Answers that carry live fields (occupancy, notices: they do not move the version) are not tagged by version; they
may use :func:`body_tag`, which saves the transfer but not the work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import Response, request
from sqlalchemy.engine import Connection

_STATE = sa.text("SELECT version, changed_at FROM data_version")

PUBLIC_MAX_AGE_S = 0
"""Shared caches and browsers keep a data answer this long without asking; 0 means they ask every time (cheaply,
with a 304): a planner's edit is seen at once."""
STATIC_MAX_AGE_S = 365 * 24 * 3600
"""A static file addressed with its content hash (``?v=``) never changes under that address."""


@dataclass(frozen=True)
class Validators:
    """The entity tag and modification time of one answer."""

    etag: str
    last_modified: datetime


def data_state(conn: Connection) -> tuple[int, datetime]:
    """The data version ``conn`` sees and when it was set."""
    version, changed_at = conn.execute(_STATE).one()
    return version, changed_at


def validators(conn: Connection, *selectors: Hashable) -> Validators:
    """Validators of an answer that depends on the data version and on ``selectors`` (query, role, format …)."""
    version, changed_at = data_state(conn)
    digest = hashlib.blake2b(repr(selectors).encode(), digest_size=8).hexdigest()
    return Validators(etag=f"v{version}-{digest}", last_modified=changed_at)


def is_fresh(tags: Validators) -> bool:
    """Whether the request's conditional headers say the client already holds this answer."""
    if request.if_none_match:
        return request.if_none_match.contains_weak(tags.etag)
    since = request.if_modified_since
    return since is not None and tags.last_modified.replace(microsecond=0) <= since


def not_modified(tags: Validators, *, private: bool = False) -> Response:
    """An empty 304 carrying the validators (and the same caching rules as the full answer)."""
    return stamp(Response(status=304), tags, private=private)


def stamp(response: Response, tags: Validators, *, private: bool = False,
          max_age_s: int = PUBLIC_MAX_AGE_S) -> Response:
    """Put the validators and the caching rules on ``response``.

    ``private``: the answer depends on who asks (a planner sees planned points), so shared caches must not keep it.
    """
    response.set_etag(tags.etag)
    response.last_modified = tags.last_modified
    response.headers["Cache-Control"] = (f"{'private' if private else 'public'}, max-age={max_age_s}, "
                                         "must-revalidate")
    if private:
        response.vary.add("Cookie")
        response.vary.add("Authorization")
    return response


def body_tag(response: Response) -> Response:
    """A strong tag from the body itself, and a 304 when the client holds it: for answers with live fields."""
    response.add_etag()
    return response.make_conditional(request)
