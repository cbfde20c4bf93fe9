"""Bringing a real city in and out: import and export of every kind, in the formats a bureau has.

``import_file(conn, kind, path, options=ImportOptions(...))`` and ``export_file(conn, kind, path)`` are the whole
interface; the CLI (``geoservice import`` / ``geoservice export``) and the notebooks call them. The modules, in the
order a file travels: ``readers`` (formats, encodings, CRS), ``osm`` (OpenStreetMap tags → our kinds),
``validate`` (per-row checks), ``load`` (COPY into the database, all-or-nothing), ``importer`` (the steps in
order, the report), ``export``.
"""

from geoservice.ingest.export import ExportResult, export_file
from geoservice.ingest.importer import ImportOptions, ImportRejected, ImportResult, import_file
from geoservice.ingest.kinds import KINDS, kind_spec
from geoservice.ingest.validate import Issue

__all__ = ["KINDS", "ExportResult", "ImportOptions", "ImportRejected", "ImportResult", "Issue", "export_file",
           "import_file", "kind_spec"]
