"""Per-row validation of an import: every problem is an :class:`Issue` with the row, the field and the reason.

Checks, in the order a person would fix them: the geometry (present, of the kind's type, valid — or repaired
with make-valid under ``--repair`` —, inside the city: not swapped lon/lat, not far away), then each column
(required values, code formats and parent prefixes, parents that exist, vocabularies with the allowed values
listed, phone numbers, whole numbers, opening hours and seasons, 0 ≤ occupancy ≤ capacity), then duplicate keys
within the file and — when appending — against the database. The checks are vectorised (pandas/shapely) because
a city brings a million points.

The database enforces the same rules with constraints; checking here first is what lets a rejection name its row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import shapely

from geoservice import catalogue, hours, vocab
from geoservice.errors import InvalidParameter
from geoservice.ingest.kinds import KindSpec
from geoservice.ingest.readers import GEOMETRY_ERROR

PHONE = re.compile(r"^[0-9+() -]{3,32}$")
EARTH_RADIUS_KM = 6371.0088
AMENITY_SEPARATORS = r"[;,，、|\s]+"
_TYPE_IDS = {"Point": 0, "LineString": 1, "Polygon": 3, "MultiPoint": 4, "MultiLineString": 5, "MultiPolygon": 6}


class Issue(NamedTuple):
    """One problem (or repair) found in one row of the file."""

    row: int
    field: str
    reason: str
    action: str = "rejected"


@dataclass(frozen=True, kw_only=True)
class Context:
    """What validation needs to know beyond the file: the database's keys, the city, the options."""

    city_center: tuple[float, float]
    radius_km: float
    repair: bool = False
    existing_keys: frozenset = frozenset()
    parent_codes: frozenset[str] | None = None
    squads: frozenset[str] = frozenset()


@dataclass
class Validated:
    """The rows that passed and why the others did not.

    ``rows`` holds database column values, ``geom`` (shapely) and ``row`` (the file's row number); ``repairs``
    lists the geometries ``--repair`` fixed.
    """

    rows: pd.DataFrame
    rejections: list[Issue] = field(default_factory=list)
    repairs: list[Issue] = field(default_factory=list)


class _Collector:
    """Collects issues per row position and remembers which rows are bad."""

    def __init__(self, row_numbers: np.ndarray) -> None:
        self.row_numbers = row_numbers
        self.bad = np.zeros(len(row_numbers), dtype=bool)
        self.issues: list[Issue] = []

    def reject(self, mask: np.ndarray, column: str, reason: Callable[[int], str] | str) -> None:
        """Reject the rows where ``mask`` holds; ``reason`` is a text or a function of the row position."""
        for pos in np.flatnonzero(mask):
            text = reason(pos) if callable(reason) else reason
            self.issues.append(Issue(int(self.row_numbers[pos]), column, text))
        self.bad |= mask


# -- values -------------------------------------------------------------------------------------------------

def _one_text(value) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _clean_texts(values: pd.Series) -> pd.Series:
    """Strip and blank-to-None one column, vectorised for the common column types."""
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        stripped = values.astype(object).str.strip()
        return stripped.where(stripped.notna() & (stripped != ""), None).astype(object)
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype(str).where(values.notna(), None).astype(object)
    if pd.api.types.is_float_dtype(values.dtype):
        whole = (values.notna() & (values % 1 == 0)).to_numpy()
        texts = np.where(whole, values.fillna(0).round().astype("int64").astype(str), values.astype(str))
        return pd.Series(texts, index=values.index, dtype=object).where(values.notna(), None)
    return values.map(_one_text).astype(object)


def _as_text(values: pd.Series) -> pd.Series:
    """Strings, stripped; None for missing and empty. Whole numbers read as floats (411002.0) lose the '.0'."""
    # Most columns repeat a few values (kinds, hours, amenity lists) across a million rows: clean each once.
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) == 0:
        return pd.Series([None] * len(values), index=values.index, dtype=object)
    cleaned = _clean_texts(pd.Series(uniques)).to_numpy(dtype=object)
    result = cleaned.take(np.where(codes < 0, 0, codes))
    result[codes < 0] = None
    return pd.Series(result, index=values.index, dtype=object)


def _lookup(terms: tuple[vocab.Term, ...]) -> dict[str, str]:
    """Codes and both labels (case-insensitive) → code: a file may say 公厕 or Public toilet for toilet."""
    table = {}
    for term in terms:
        for key in (term.code, term.zh, term.en):
            table[key.lower()] = term.code
    return table


def _allowed(values: tuple[str, ...]) -> str:
    return ", ".join(values)


# -- geometry -----------------------------------------------------------------------------------------------

def _single_part(geom, target: str):
    """A one-part Multi* as its part, or a Polygon as a MultiPolygon, when that is what the kind stores."""
    type_id = shapely.get_type_id(geom)
    if target == "MultiPolygon" and type_id == 3:
        return shapely.MultiPolygon([geom])
    if target in ("Point", "Polygon", "LineString") and type_id == _TYPE_IDS["Multi" + target]:
        if shapely.get_num_geometries(geom) == 1:
            return shapely.get_geometry(geom, 0)
    return geom


def _conform(geoms: np.ndarray, target: str) -> np.ndarray:
    wrong = shapely.get_type_id(geoms) != _TYPE_IDS[target]
    wrong &= ~pd.isna(geoms)
    if wrong.any():
        geoms = geoms.copy()
        geoms[wrong] = [_single_part(g, target) for g in geoms[wrong]]
    return geoms


def _type_problem(geom, target: str) -> str:
    kind = shapely.get_type_id(geom)
    name = geom.geom_type
    parts = shapely.get_num_geometries(geom)
    if kind == _TYPE_IDS.get("Multi" + target):
        return f"a {name} of {parts} parts; expected one {target}"
    return f"a {name}; expected a {target}"


def explode_lines(frame, row_numbers: np.ndarray):
    """Streets: a MultiLineString becomes one row per part, each keeping the file's row number."""
    geoms = frame.geometry.to_numpy()
    multi = shapely.get_type_id(geoms) == _TYPE_IDS["MultiLineString"]
    if not multi.any():
        return frame, row_numbers
    counts = np.where(multi, shapely.get_num_geometries(geoms), 1)
    positions = np.repeat(np.arange(len(frame)), counts)
    parts, _index = shapely.get_parts(geoms[multi], return_index=True)
    exploded = frame.iloc[positions].reset_index(drop=True)
    new_geoms = geoms[positions].copy()
    new_geoms[np.repeat(multi, counts)] = parts
    exploded = exploded.set_geometry(list(new_geoms), crs=frame.crs)
    # Parts after the first get new ids: an id names one segment.
    if "id" in exploded.columns:
        first = np.r_[True, positions[1:] != positions[:-1]]
        exploded.loc[~first, "id"] = None
    return exploded, row_numbers[positions]


def _distance_km(lon: np.ndarray, lat: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    """Great-circle distance (haversine) from the city centre; precise enough to tell 60 km from 6,000."""
    lon0, lat0 = np.radians(center[0]), np.radians(center[1])
    phi = np.radians(np.clip(lat, -90, 90))
    dphi, dlon = phi - lat0, np.radians(lon) - lon0
    a = np.sin(dphi / 2) ** 2 + np.cos(lat0) * np.cos(phi) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def check_extent(geoms: np.ndarray, out: _Collector, ctx: Context) -> None:
    """Refuse the file when every feature is out of the city (swapped lon/lat, wrong CRS), else reject rows."""
    present = ~pd.isna(geoms)
    if not present.any():
        return
    bounds = shapely.bounds(geoms)
    x, y = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2
    distance = _distance_km(x, y, ctx.city_center)
    far = present & ~(distance <= ctx.radius_km)
    swapped = np.zeros(len(geoms), dtype=bool)
    if far.any():
        swapped[far] = _distance_km(y[far], x[far], ctx.city_center) <= ctx.radius_km
    lon0, lat0 = ctx.city_center
    where = f"the city centre ({lon0:g}, {lat0:g}; GEOSERVICE_CITY_RADIUS_KM = {ctx.radius_km:g})"
    first = int(np.flatnonzero(far)[0]) if far.any() else 0
    example = f"row {out.row_numbers[first]}: ({x[first]:.6f}, {y[first]:.6f})"
    if swapped.any() and swapped.sum() == present.sum():
        raise InvalidParameter(
            f"longitude and latitude look swapped in every row ({example} is lat, lon): swapped they fall "
            f"near {where}; swap the columns (e.g. --map lon=lat --map lat=lon) and import again")
    if far.sum() == present.sum():
        nearest = float(np.nanmin(distance[present]))
        raise InvalidParameter(
            f"every feature lies far outside the city: the nearest is {nearest:,.0f} km from {where}; "
            f"{example}. Is the coordinate system right (--crs)?")
    out.reject(swapped, "geometry", lambda p: f"longitude and latitude look swapped: ({x[p]:.6f}, {y[p]:.6f}) "
                                              f"is far from the city, ({y[p]:.6f}, {x[p]:.6f}) inside it")
    out.reject(far & ~swapped, "geometry", lambda p: f"lies {distance[p]:,.0f} km from {where}")


def check_geometry(frame, spec: KindSpec, out: _Collector, ctx: Context) -> tuple[np.ndarray, list[Issue]]:
    """Presence, type, validity (or repair) and place of every geometry; returns them conformed."""
    target = spec.geometry
    geoms = frame.geometry.to_numpy().copy()
    reader_errors = frame[GEOMETRY_ERROR].to_numpy() if GEOMETRY_ERROR in frame.columns else None
    if reader_errors is not None:
        has_error = pd.notna(reader_errors)
        out.reject(has_error, "geometry", lambda p: reader_errors[p])
        geoms[has_error] = None
    missing = pd.isna(geoms) | shapely.is_empty(geoms)
    out.reject(missing & ~out.bad, "geometry", "missing geometry")
    geoms[missing] = None
    if shapely.has_z(geoms).any():
        geoms = shapely.force_2d(geoms)
    geoms = _conform(geoms, target)
    wrong = ~missing & (shapely.get_type_id(geoms) != _TYPE_IDS[target])
    out.reject(wrong, "geometry", lambda p: _type_problem(geoms[p], target))
    repairs = _check_validity(geoms, wrong | missing, target, out, ctx)
    if target == "LineString":
        flat = ~out.bad & ~missing & ~(shapely.length(geoms) > 0)
        out.reject(flat, "geometry", "a street needs two distinct points (zero length)")
    usable = ~missing & ~wrong
    check_extent(np.where(usable, geoms, None), out, ctx)
    return geoms, repairs


def _check_validity(geoms: np.ndarray, skip: np.ndarray, target: str, out: _Collector, ctx: Context) -> list[Issue]:
    invalid = ~skip & ~shapely.is_valid(geoms)
    repairs: list[Issue] = []
    for pos in np.flatnonzero(invalid):
        reason = shapely.is_valid_reason(geoms[pos])
        row = int(out.row_numbers[pos])
        if not ctx.repair:
            out.reject(_one(len(geoms), pos), "geometry", f"invalid geometry: {reason}; --repair fixes it (make-valid)")
            continue
        fixed = _conform(np.array([shapely.make_valid(geoms[pos], method="structure", keep_collapsed=False)],
                                  dtype=object), target)[0]
        if shapely.get_type_id(fixed) != _TYPE_IDS[target] or fixed.is_empty or not fixed.is_valid:
            out.reject(_one(len(geoms), pos), "geometry",
                       f"invalid geometry: {reason}; made valid it is {_type_problem(fixed, target)}")
            continue
        geoms[pos] = fixed
        repairs.append(Issue(row, "geometry", f"repaired with make-valid (was: {reason})", "repaired"))
    return repairs


def _one(length: int, pos: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    mask[pos] = True
    return mask


# -- columns ------------------------------------------------------------------------------------------------

def _check_code(values: pd.Series, spec: KindSpec, out: _Collector) -> None:
    ok = values.str.fullmatch(rf"\d{{{spec.code_digits}}}").fillna(False).to_numpy(dtype=bool)
    present = values.notna().to_numpy()
    out.reject(present & ~ok, "code", lambda p: f"code must be {spec.code_digits} digits, got {values.iat[p]!r}")


def _check_parent(cols: dict[str, pd.Series], spec: KindSpec, out: _Collector, ctx: Context) -> None:
    column = spec.parent_column
    codes = cols["code"]
    derived = codes.str[:spec.parent_digits]
    given = cols[column]
    mismatch = (given.notna() & codes.notna() & (given != derived)).to_numpy(dtype=bool)
    singular = spec.table
    out.reject(mismatch & ~out.bad, column, lambda p: (
        f"{singular} code {codes.iat[p]} does not start with its {spec.parent} code {given.iat[p]} "
        f"(a {singular} code is its {spec.parent}'s {spec.parent_digits}-digit code + 3 digits)"))
    cols[column] = derived.where(given.isna() | ~pd.Series(mismatch, index=given.index), given)
    if ctx.parent_codes is not None:
        unknown = (codes.notna() & ~cols[column].isin(ctx.parent_codes)).to_numpy(dtype=bool) & ~out.bad
        plural = catalogue.TABLES[spec.parent].id
        out.reject(unknown, column, lambda p: f"{spec.parent} {cols[column].iat[p]} does not exist in the database; "
                                              f"import {plural} first")


def _check_vocab(values: pd.Series, name: str, table: dict[str, str], allowed: tuple[str, ...],
                 out: _Collector) -> pd.Series:
    mapped = values.str.lower().map(table)
    unknown = (values.notna() & mapped.isna()).to_numpy(dtype=bool)
    out.reject(unknown, name, lambda p: f"unknown {name} {values.iat[p]!r}; allowed: {_allowed(allowed)}")
    return mapped.where(mapped.notna(), None).astype(object)


def _parse_amenities(text: str | None, table: dict[str, str]) -> tuple[tuple[str, ...], str | None]:
    """``a;b;c`` (or a list written as ``[..]``/``{..}``, codes or labels) → (codes, first unknown token)."""
    if not text:
        return (), None
    tokens = [t for t in re.split(AMENITY_SEPARATORS, re.sub(r"[\[\]{}()\"']", " ", text)) if t]
    unknown = next((t for t in tokens if t.lower() not in table), None)
    # Keep the file's order, drop repeats: a set would reorder and break export → import round trips.
    return tuple(dict.fromkeys(table[t.lower()] for t in tokens if t.lower() in table)), unknown


def _check_amenities(values: pd.Series, out: _Collector) -> pd.Series:
    table = _lookup(vocab.AMENITIES)
    # A city has a few hundred distinct amenity lists, not a million: parse each once.
    parsed = {text: _parse_amenities(text, table) for text in values.dropna().unique()}
    unknown = values.map({text: bad for text, (_codes, bad) in parsed.items() if bad is not None})
    out.reject(unknown.notna().to_numpy(), "amenities", lambda p: f"unknown amenity {unknown.iat[p]!r}; allowed: "
                                                                 f"{_allowed(vocab.AMENITY_CODES)}")
    codes = values.map({text: codes for text, (codes, _bad) in parsed.items()})
    # Tuples, not lists: hashable, so the loader formats each distinct list once.
    return codes.where(codes.notna(), pd.Series([()] * len(codes), index=codes.index)).astype(object)


def _check_pattern(values: pd.Series, name: str, pattern: re.Pattern, allowed: str, out: _Collector) -> None:
    ok = values.str.fullmatch(pattern.pattern).fillna(False).to_numpy(dtype=bool)
    out.reject(values.notna().to_numpy() & ~ok, name, lambda p: f"{name} {values.iat[p]!r} is not {allowed}")


def _check_int(values: pd.Series, name: str, out: _Collector, minimum: int = 0) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    whole = numbers.notna() & (numbers == np.floor(numbers)) & (numbers >= minimum)
    bad = (values.notna() & ~whole).to_numpy(dtype=bool)
    out.reject(bad, name, lambda p: f"{name} must be a whole number ≥ {minimum}, got {values.iat[p]!r}")
    return numbers.where(whole).astype("Int64")


def _check_parsed(values: pd.Series, name: str, parse: Callable[[str], object], out: _Collector) -> None:
    problems = {}
    for text in values.dropna().unique():
        try:
            parse(text)
        except ValueError as exc:
            problems[text] = str(exc)
    if problems:
        mask = values.isin(list(problems)).to_numpy(dtype=bool)
        out.reject(mask, name, lambda p: f"{name}: {problems[values.iat[p]]}")


def _check_column(cols: dict[str, pd.Series], f, spec: KindSpec, out: _Collector, ctx: Context) -> None:
    values = cols[f.name]
    checks = {
        "code": lambda: _check_code(values, spec, out),
        "phone": lambda: _check_pattern(values, f.name, PHONE, "a phone number (3-32 of 0-9 + ( ) - and space)", out),
        "hours": lambda: _check_parsed(values, f.name, hours.parse_opening_hours, out),
        "season": lambda: _check_parsed(values, f.name, hours.parse_season, out),
    }
    if f.type in checks:
        checks[f.type]()
    elif f.type == "kind":
        cols[f.name] = _check_vocab(values, "kind", _lookup(vocab.POINT_KINDS), vocab.KIND_CODES, out)
    elif f.type == "class":
        table = {c: c for c in vocab.STREET_CLASSES}
        cols[f.name] = _check_vocab(values, "class", table, vocab.STREET_CLASSES, out)
    elif f.type == "status":
        table = {s: s for s in vocab.POINT_STATUSES}
        cols[f.name] = _check_vocab(values.fillna("open"), "status", table, vocab.POINT_STATUSES, out)
    elif f.type == "amenities":
        cols[f.name] = _check_amenities(values, out)
    elif f.type == "int":
        cols[f.name] = _check_int(values, f.name, out)
    elif f.type == "id":
        cols[f.name] = _check_int(values, f.name, out, minimum=1)
    elif f.type == "squad" and ctx.squads is not None:
        unknown = (values.notna() & ~values.isin(ctx.squads)).to_numpy(dtype=bool)
        known = ", ".join(sorted(ctx.squads)[:12]) or "none — import squads first"
        out.reject(unknown, "squad", lambda p: f"unknown squad {values.iat[p]!r}; squads in the database: {known}")


def _check_capacity(cols: dict[str, pd.Series], out: _Collector) -> None:
    capacity, occupancy = cols["capacity"], cols["occupancy"]
    without = (occupancy.notna() & capacity.isna()).to_numpy(dtype=bool)
    over = (occupancy.notna() & capacity.notna() & (occupancy > capacity)).fillna(False).to_numpy(dtype=bool)
    out.reject(without & ~out.bad, "occupancy", "occupancy needs a capacity")
    out.reject(over & ~out.bad, "occupancy",
               lambda p: f"occupancy {occupancy.iat[p]} exceeds capacity {capacity.iat[p]}")


def _check_duplicates(cols: dict[str, pd.Series], spec: KindSpec, out: _Collector, ctx: Context) -> None:
    keys = cols[spec.key]
    present = keys.notna().to_numpy()
    repeated = keys.duplicated(keep="first").to_numpy() & present
    if repeated.any():
        first_row = dict(zip(keys[~keys.duplicated(keep="first") & keys.notna()],
                             out.row_numbers[~keys.duplicated(keep="first").to_numpy() & present], strict=True))
        out.reject(repeated, spec.key, lambda p: f"duplicate {spec.key} {keys.iat[p]} (first on row "
                                                 f"{first_row[keys.iat[p]]})")
    if ctx.existing_keys:
        taken = (keys.isin(ctx.existing_keys).to_numpy() & present) & ~repeated
        out.reject(taken, spec.key, lambda p: f"duplicate {spec.key} {keys.iat[p]}: already in the database "
                                              "(--replace replaces the whole layer)")


def validate(frame, spec: KindSpec, *, row_numbers: np.ndarray, ctx: Context) -> Validated:
    """Check every row of ``frame`` (EPSG:4326) as ``spec``; returns the good rows and the issues.

    Raises:
        InvalidParameter: the whole file is out of place (swapped lon/lat, wrong CRS) — see :func:`check_extent`.
    """
    out = _Collector(row_numbers)
    repairs: list[Issue] = []
    geoms = None
    if spec.geometry:
        geoms, repairs = check_geometry(frame, spec, out, ctx)
    cols = {f.name: _as_text(frame[f.name]) if f.name in frame.columns else
            pd.Series([None] * len(frame), index=frame.index, dtype=object) for f in spec.fields}
    for f in spec.fields:
        if f.required:
            out.reject(cols[f.name].isna().to_numpy(), f.name, f"{f.name} is required")
        if f.type != "parent":
            _check_column(cols, f, spec, out, ctx)
    if spec.parent:
        _check_parent(cols, spec, out, ctx)
    if "capacity" in cols:
        _check_capacity(cols, out)
    _check_duplicates(cols, spec, out, ctx)
    rows = pd.DataFrame(cols)
    if geoms is not None:
        rows["geom"] = geoms
    rows["row"] = row_numbers
    rejections = sorted(out.issues, key=lambda i: (i.row, i.field))
    return Validated(rows=rows[~out.bad].reset_index(drop=True), rejections=rejections, repairs=repairs)
