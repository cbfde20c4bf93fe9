"""GeoAlchemy2 models of the data model, generated from the catalogue (:mod:`geoservice.catalogue`).

The schema itself — with every constraint — is created by the Alembic migrations in ``geoservice/db/migrations``;
these tables are the catalogue's columns as SQLAlchemy sees them, for inserts (the demo city, benchmarks) and
queries. Nothing here is written by hand: ``tests/test_catalogue.py`` checks the catalogue (and so these models)
against the live database.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.orm import DeclarativeBase

from geoservice import catalogue


class Base(DeclarativeBase):
    """Declarative base of all geoservice tables."""


_TYPES = {
    "text": sa.Text,
    "integer": sa.Integer,
    "bigint": sa.BigInteger,
    "double precision": sa.Double,
    "timestamp with time zone": lambda: sa.DateTime(timezone=True),
    "text[]": lambda: sa.ARRAY(sa.Text),
}


def _type(sql_type: str) -> sa.types.TypeEngine:
    varchar = re.fullmatch(r"character varying\((\d+)\)", sql_type)
    return sa.String(int(varchar.group(1))) if varchar else _TYPES[sql_type]()


def _column(table: catalogue.Table, prop: catalogue.Property) -> sa.Column:
    args: list = [_type(prop.sql_type)]
    if prop.references:
        args.append(sa.ForeignKey(prop.references))
    if prop.generated:
        args.append(sa.Computed(prop.generated))
    if prop.identity:
        args.append(sa.Identity())
    default = sa.text(prop.default) if prop.default else None
    return sa.Column(prop.name, *args, primary_key=prop.name == table.key, nullable=prop.nullable,
                     unique=prop.unique or None, server_default=default)


def _model(class_name: str, table: catalogue.Table) -> type[Base]:
    """A declarative class over the catalogue's ``table``: its columns, then its geometry."""
    columns = [_column(table, p) for p in table.columns]
    if table.geometry is not None:
        geometry = table.geometry
        columns.append(sa.Column(geometry.column, Geometry(geometry.type.upper(), srid=geometry.srid,
                                                           spatial_index=False), nullable=geometry.nullable))
    sa_table = sa.Table(table.name, Base.metadata, *columns)
    return type(class_name, (Base,), {"__table__": sa_table, "__doc__": f"{table.title_zh} {table.title_en}."})


District = _model("District", catalogue.DISTRICT)
Subdistrict = _model("Subdistrict", catalogue.SUBDISTRICT)
Community = _model("Community", catalogue.COMMUNITY)
Squad = _model("Squad", catalogue.SQUAD)
Grid = _model("Grid", catalogue.GRID)
Street = _model("Street", catalogue.STREET)
Point = _model("Point", catalogue.POINT)

TABLES = catalogue.IMPORT_ORDER
"""Table names in dependency order: parents before children."""
