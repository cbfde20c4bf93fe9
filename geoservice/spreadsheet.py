"""Text a spreadsheet would run, made inert in every file geoservice writes — and read back unchanged.

Excel, LibreOffice and WPS treat a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return before one) as a formula when they open a CSV file: a point named ``=HYPERLINK("http://evil", "查看")`` or
``=cmd|' /C calc'!A0`` becomes a live link or a DDE command on the planner's desktop. Following the OWASP guidance
on CSV injection, such text is written with a single quote ``'`` in front (:func:`neutralise`); spreadsheets show
the text and run nothing. Numbers written as numbers are left alone, and so is text that is a plain decimal number
(``-12.5``): a spreadsheet reads it as that number and runs nothing.

What the exports promise — an import of the file gives the same rows back — holds because :func:`restore` is the
exact inverse of :func:`neutralise` on every string: text that already starts with quotes before a trigger
(``'=x``) gets one more quote on the way out, and exactly one quote comes off on the way in.

XLSX needs no quote: its cells are typed, so text is written as a string cell (never a formula) and, when it starts
with a trigger, with the ``quotePrefix`` style — what Excel itself stores when a person types ``'=x`` — so the cell
stays text even when edited (:func:`xlsx_cell`). The text itself is unchanged there.

Which writers use what: ``geoservice export`` CSV and GeoPackage (:func:`neutralise_frame`), XLSX
(:func:`xlsx_cell`); the coverage downloads ``f=csv`` (:func:`neutralise`) and ``f=gpkg`` (:func:`neutralise_frame`).
GeoJSON and Shapefile attributes are written as they are: GeoJSON is JSON and a dBASE table is typed, and neither is
parsed for formulas when opened.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
from openpyxl.cell import WriteOnlyCell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""
QUOTE = "'"
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_STARTS_ESCAPED = re.compile(r"'+[=+\-@\t\r]")  # what restore() takes a quote off


def formula_like(text: str) -> bool:
    """True when a spreadsheet would read ``text`` as a formula (a plain decimal number is not one)."""
    return text[:1] in TRIGGERS and not _PLAIN_NUMBER.fullmatch(text)


def neutralise(text: str) -> str:
    """``text`` as a spreadsheet-safe cell: a quote in front of text a spreadsheet would run; else unchanged.

    Text that already starts with quotes before a trigger gets one more quote too, so that :func:`restore` gives
    back exactly ``text`` for every string.
    """
    if formula_like(text) or _STARTS_ESCAPED.match(text):
        return QUOTE + text
    return text


def restore(text: str) -> str:
    """The text :func:`neutralise` was given: one quote off a cell that starts with quotes before a trigger."""
    return text[1:] if _STARTS_ESCAPED.match(text) else text


def cell(value: Any) -> Any:
    """A value for a CSV or GeoPackage cell: text neutralised, everything else (numbers, None) unchanged."""
    return neutralise(value) if isinstance(value, str) else value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell neutralised (numbers, missing values and the geometry untouched)."""
    return _map_text(frame, neutralise, r"['=+\-@\t\r]")


def restore_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell restored: the inverse of :func:`neutralise_frame`.

    For the importer's CSV and GeoPackage readers; only cells starting with a quote are looked at twice, so a
    million rows cost one vectorised pass per text column.
    """
    return _map_text(frame, restore, QUOTE)


def _map_text(frame: pd.DataFrame, convert: Callable[[str], str], first: str) -> pd.DataFrame:
    """``frame`` with ``convert`` applied to the text cells that start with a match of ``first``."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if not (column.dtype == object or pd.api.types.is_string_dtype(column.dtype)):
            continue  # numbers, dates, the geometry
        if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "mixed", "mixed-integer"):
            continue
        touched = column.str.match(first, na=False).astype(bool)
        if touched.any():
            out.loc[touched, name] = column[touched].map(convert)
    return out


def xlsx_cell(sheet: WriteOnlyWorksheet, value: Any) -> WriteOnlyCell:
    """A cell of a write-only XLSX sheet: text always a string cell, never a formula; trigger text quote-prefixed.

    Missing values (None, NaN, pandas NA) are empty cells; numpy numbers become Python numbers.
    """
    if value is not None and not isinstance(value, str) and pd.isna(value):
        value = None
    elif hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    out = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        out.data_type = "s"  # openpyxl would store text starting with "=" as a formula
        out.quotePrefix = formula_like(value)
    return out
