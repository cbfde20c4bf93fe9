"""What each importable kind is: its table, key, geometry type and the columns a file may carry.

Read from the catalogue (:mod:`geoservice.catalogue`): a kind is a table under its plural name, and its file
columns are the properties an import reads (those with a ``check``), in the catalogue's order. They have the
database's column names (an export writes exactly these, so export → import round-trips), except that a grid names
its squad by ``squad`` (the squad's name) rather than by the database id. Columns a kind does not know are ignored;
the derived columns an export adds (``area_m2``, ``length_m``, ``source``, ``target``: the catalogue's
``export_only`` properties) are recomputed by the database, never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoservice import catalogue
from geoservice.errors import InvalidParameter


@dataclass(frozen=True)
class Field:
    """One column of a kind: its name, value type and whether every row needs it.

    Types are the catalogue's import checks (:data:`geoservice.catalogue.CHECKS`): ``text``, ``code`` (digits, see
    ``KindSpec.code_digits``), ``parent`` (the parent area's code, derived from the code when absent), ``int``
    (whole number ≥ 0), ``kind``, ``amenities``, ``status``, ``class`` (street class), ``phone``, ``hours``
    (opening hours), ``season``, ``id`` (kept when given), ``squad`` (a squad's name).
    """

    name: str
    type: str = "text"
    required: bool = False


@dataclass(frozen=True)
class KindSpec:
    """One importable kind (the plural name the CLI takes): the catalogue's table as imports see it."""

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
        return self.catalogue_table.parent_column

    @property
    def catalogue_table(self) -> catalogue.Table:
        """The catalogue's description of the kind's table."""
        return catalogue.TABLES[self.table]


def _spec(table: catalogue.Table) -> KindSpec:
    fields = tuple(Field(p.name, p.check, p.required) for p in table.properties if p.check is not None)
    parent = table.parent
    return KindSpec(name=table.id, table=table.name, key=table.import_key,
                    geometry=table.geometry.type if table.geometry else None, fields=fields,
                    code_digits=table.code_digits, parent=parent.name if parent else None,
                    parent_digits=parent.code_digits if parent else 0)


KINDS: dict[str, KindSpec] = {t.id: _spec(t) for t in catalogue.TABLES.values()}


def kind_spec(kind: str) -> KindSpec:
    """The spec of ``kind``; InvalidParameter listing the allowed kinds otherwise."""
    spec = KINDS.get(kind.strip().lower()) if isinstance(kind, str) else None
    if spec is None:
        raise InvalidParameter(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    return spec
