"""What each importable kind is: its table, key, geometry type and the columns a file may carry.

File columns have the database's column names (an export writes exactly these, so export → import round-trips),
except that a grid names its squad by ``squad`` (the squad's name) rather than by the database id. Columns a
kind does not know are ignored; derived columns an export adds (``area_m2``, ``length_m``, ``source``,
``target``) are recomputed by the database, never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoservice.errors import InvalidParameter


@dataclass(frozen=True)
class Field:
    """One column of a kind: its name, value type and whether every row needs it.

    Types: ``text``, ``code`` (digits, see ``KindSpec.code_digits``), ``parent`` (the parent area's code,
    derived from the code when absent), ``int`` (whole number ≥ 0), ``kind``, ``amenities``, ``status``,
    ``class`` (street class), ``phone``, ``hours`` (opening hours), ``season``, ``id`` (kept when given).
    """

    name: str
    type: str = "text"
    required: bool = False


@dataclass(frozen=True)
class KindSpec:
    """One importable kind (the plural name the CLI takes)."""

    name: str
    table: str
    key: str
    geometry: str | None
    fields: tuple[Field, ...]
    code_digits: int = 0
    parent: str | None = None
    parent_digits: int = 0

    @property
    def columns(self) -> tuple[str, ...]:
        """The file columns of this kind, in export order."""
        return tuple(f.name for f in self.fields)

    @property
    def parent_column(self) -> str | None:
        """``district_code`` etc.: the column naming the parent area."""
        return f"{self.parent}_code" if self.parent else None


def _area(name: str, table: str, digits: int, parent: str | None = None, parent_digits: int = 0) -> KindSpec:
    fields = [Field("code", "code", True), Field("name", "text", True)]
    if parent:
        fields.insert(1, Field(f"{parent}_code", "parent"))
    return KindSpec(name, table, "code", "MultiPolygon", tuple(fields), digits, parent, parent_digits)


KINDS: dict[str, KindSpec] = {
    "districts": _area("districts", "district", 6),
    "subdistricts": _area("subdistricts", "subdistrict", 9, "district", 6),
    "communities": _area("communities", "community", 12, "subdistrict", 9),
    "grids": KindSpec(
        "grids", "grid", "code", "Polygon",
        (Field("code", "code", True), Field("community_code", "parent"), Field("name", "text", True),
         Field("squad", "squad"), Field("officer_name"), Field("officer_phone", "phone")),
        15, "community", 12),
    "squads": KindSpec(
        "squads", "squad", "name", None,
        (Field("id", "id"), Field("name", "text", True), Field("leader"), Field("phone", "phone"))),
    "streets": KindSpec(
        "streets", "street", "id", "LineString",
        (Field("id", "id"), Field("name"), Field("class", "class", True))),
    "points": KindSpec(
        "points", "point", "id", "Point",
        (Field("id", "id"), Field("name", "text", True), Field("kind", "kind", True),
         Field("amenities", "amenities"), Field("address"), Field("phone", "phone"),
         Field("opening_hours", "hours"), Field("season", "season"), Field("capacity", "int"),
         Field("occupancy", "int"), Field("status", "status"))),
}

# Columns an export adds that the database derives; an import ignores them.
DERIVED_COLUMNS: dict[str, tuple[str, ...]] = {
    "grids": ("area_m2",),
    "streets": ("length_m", "source", "target"),
}


def kind_spec(kind: str) -> KindSpec:
    """The spec of ``kind``; InvalidParameter listing the allowed kinds otherwise."""
    spec = KINDS.get(kind.strip().lower()) if isinstance(kind, str) else None
    if spec is None:
        raise InvalidParameter(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    return spec
