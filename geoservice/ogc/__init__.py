"""OGC API – Features (Part 1: Core, GeoJSON, HTML, OpenAPI 3.0) under ``/ogc``.

``core`` holds the collections and their queries (no Flask), ``documents`` and ``openapi`` build the JSON
documents, and ``views`` is the Flask blueprint that ties them to requests.
"""
