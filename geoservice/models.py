"""GeoAlchemy2 models of the data model (see ../shared/DESIGN.md, "Entities").

The schema itself — with every constraint — is created by the Alembic migrations in ``geoservice/db/migrations``;
these declarations mirror it for queries and inserts. ``tests/test_schema.py`` checks the two agree.
"""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import ARRAY, BigInteger, Computed, DateTime, Float, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of all geoservice tables."""


def _geom(kind: str, nullable: bool = True) -> Mapped:
    return mapped_column(Geometry(kind, srid=4326, spatial_index=False), nullable=nullable)


def _updated_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class District(Base):
    """区/县: an administrative district with its 6-digit code."""

    __tablename__ = "district"
    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    geom = _geom("MULTIPOLYGON")
    updated_at = _updated_at()


class Subdistrict(Base):
    """街道/乡镇: 9-digit code = district code + 3 digits."""

    __tablename__ = "subdistrict"
    code: Mapped[str] = mapped_column(String(9), primary_key=True)
    district_code: Mapped[str] = mapped_column(ForeignKey("district.code"))
    name: Mapped[str] = mapped_column(Text)
    geom = _geom("MULTIPOLYGON")
    updated_at = _updated_at()


class Community(Base):
    """社区/村: 12-digit code = subdistrict code + 3 digits."""

    __tablename__ = "community"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    subdistrict_code: Mapped[str] = mapped_column(ForeignKey("subdistrict.code"))
    name: Mapped[str] = mapped_column(Text)
    geom = _geom("MULTIPOLYGON")
    updated_at = _updated_at()


class Squad(Base):
    """执法中队: the enforcement squad responsible for a set of grids."""

    __tablename__ = "squad"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    leader: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    updated_at = _updated_at()


class Grid(Base):
    """单元网格: 15-digit code = community code + 3-digit sequence; one grid officer and one squad."""

    __tablename__ = "grid"
    code: Mapped[str] = mapped_column(String(15), primary_key=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"))
    name: Mapped[str] = mapped_column(Text)
    squad_id: Mapped[int | None] = mapped_column(ForeignKey("squad.id"))
    officer_name: Mapped[str | None] = mapped_column(Text)
    officer_phone: Mapped[str | None] = mapped_column(Text)
    area_m2: Mapped[float] = mapped_column(Float, Computed("ST_Area(geom::geography)"))
    geom = _geom("POLYGON", nullable=False)
    updated_at = _updated_at()


class Street(Base):
    """A street centreline segment between intersections, with its routing source/target nodes."""

    __tablename__ = "street"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    class_: Mapped[str] = mapped_column("class", Text)
    length_m: Mapped[float] = mapped_column(Float, Computed("ST_Length(geom::geography)"))
    geom = _geom("LINESTRING", nullable=False)
    source: Mapped[int | None] = mapped_column(BigInteger)
    target: Mapped[int | None] = mapped_column(BigInteger)
    updated_at = _updated_at()


class Point(Base):
    """A convenience point: kiosk, rest station, vendor point, toilet … with its amenities."""

    __tablename__ = "point"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    amenities: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    address: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    opening_hours: Mapped[str | None] = mapped_column(Text)
    season: Mapped[str | None] = mapped_column(Text)
    capacity: Mapped[int | None] = mapped_column(Integer)
    occupancy: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text, server_default="open")
    geom = _geom("POINT", nullable=False)
    updated_at = _updated_at()


# In dependency order: parents before children.
TABLES = ("district", "subdistrict", "community", "squad", "grid", "street", "point")
