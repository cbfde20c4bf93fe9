"""Both OpenAPI documents against the server, by schemathesis: requests generated from every documented parameter.

For each operation of ``/api/v1/openapi.json`` and ``/ogc/api``, schemathesis generates valid requests (positive)
and requests that break the document (negative) — a fixed seed and a bounded number of examples each — and runs its
checks on every answer: no server error, the answer conforms to the documented responses (status, content type,
schema), a valid request is not refused, an invalid one is not accepted. The documents are built from the same
definitions the server validates with (``geoservice.api.openapi``, ``geoservice.catalogue``), so what the server
allows and what it documents cannot drift apart.

One thing OpenAPI 3.0 cannot state: a bbox's minimum must not exceed its maximum, and its latitudes lie within
±90° (the items of an array share one schema). So in valid requests a generated bbox is put in order and within the
world before it is sent (``_valid_bbox``); invalid requests keep whatever was generated.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode

from geoservice.app import create_app

DOCUMENTS = {"api": "/api/v1/openapi.json", "ogc": "/ogc/api?f=json"}
EXAMPLES = 25


def _operations() -> list[tuple[str, str, str, bool]]:
    """(document, method, path, takes input) of every documented operation, read from a settings-free app.

    An operation that takes no parameter and no body (``GET /api/v1/me``) has no request that breaks its document:
    it is checked with valid requests only.
    """
    from geoservice.config import load_settings

    app = create_app(load_settings().replace(database_url="postgresql://nobody@127.0.0.1:1/none"))
    found = []
    for name, url in DOCUMENTS.items():
        for result in schemathesis.openapi.from_wsgi(url, app).get_all_operations():
            operation = result.ok()
            takes_input = bool(operation.definition.raw.get("parameters") or operation.definition.raw.get(
                "requestBody") or operation.path_parameters)
            found.append((name, operation.method.upper(), operation.path, takes_input))
    return found


OPERATIONS = _operations()


def _valid_bbox(generated):
    """The generated bbox (a string or four numbers), its bounds put in order and within the world."""
    numbers = [float(v) for v in (generated.split(",") if isinstance(generated, str) else generated)]
    lons = sorted(max(-180.0, min(180.0, v)) for v in numbers[0::2])
    lats = sorted(max(-90.0, min(90.0, v)) for v in numbers[1::2])
    box = [lons[0], lats[0], lons[1], lats[1]]
    return ",".join(repr(v) for v in box) if isinstance(generated, str) else box


@pytest.fixture(scope="module")
def documents(app):
    return {name: schemathesis.openapi.from_wsgi(url, app) for name, url in DOCUMENTS.items()}


def _operation(documents, name: str, method: str, path: str):
    for result in documents[name].get_all_operations():
        operation = result.ok()
        if operation.method.upper() == method and operation.path == path:
            return operation
    raise LookupError(f"{method} {path} is not in the {name} document")


CASES = [(d, m, p, mode) for d, m, p, takes_input in OPERATIONS
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if takes_input or mode is GenerationMode.POSITIVE]


@pytest.mark.parametrize(("document", "method", "path", "mode"), CASES,
                         ids=[f"{d}:{m} {p}-{mode.value}" for d, m, p, mode in CASES])
def test_the_server_keeps_what_its_document_says(documents, document, method, path, mode):
    operation = _operation(documents, document, method, path)

    @seed(20261130)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        if mode is GenerationMode.POSITIVE and case.query and "bbox" in case.query:
            case.query["bbox"] = _valid_bbox(case.query["bbox"])
        # identity: the checks read the body as it is (the compression of answers is tested on its own)
        case.call_and_validate(headers={"Accept-Encoding": "identity"})

    check()
