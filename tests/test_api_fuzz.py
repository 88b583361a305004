"""Fuzz every operation of the OpenAPI schema against a uvicorn server with ALL of
schemathesis's checks: no 5xx, every status code and content type documented, response bodies
(422s included) matching their declared schemas, schema-valid requests accepted, invalid ones
rejected, auth not ignored. Writes are authenticated and go to a copy of the test store."""

import json
import os
import shutil
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from tests.servers_api import API_KEY, uvicorn_server

# Examples per operation: enough to reach every parameter's odd values, bounded for CI time.
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))
AUTH = {"Authorization": f"Bearer {API_KEY}"}

# A 422 that only the server can decide (band 5 of a 3-band mosaic, a coordinate outside the
# CRS's area of use, an asset outside the allow-list, "exactly one of urls/stac_api/mosaic")
# is the right answer to a request the schema allows: such 422s are typed "value_error".
# Any other 422 is FastAPI's own validation disagreeing with the published schema: a lie.
SEMANTIC_422 = "value_error"
ACCEPTED = {401, 403, 404, 409, 424, 429, 504}


@schemathesis.check
def schema_valid_requests_are_accepted(ctx, response, case) -> None:
    """positive_data_acceptance, except for the semantic 422s and runtime 424/504 above."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if 200 <= status < 400 or status in ACCEPTED:
        return None
    if status == 422:
        types = {item.get("type") for item in response.json().get("detail", [])}
        if types <= {SEMANTIC_422}:
            return None
        raise AssertionError(f"schema-valid request failed schema validation: {response.text}")
    raise AssertionError(f"schema-valid request answered {status}: {response.text[:300]}")


checks.load_all_checks()
ALL_CHECKS = [
    check
    for check in checks.CHECKS.get_all()
    if check.__name__ != "positive_data_acceptance"  # replaced by the check above
]


@pytest.fixture(scope="session")
def fuzz_server(api_store, tmp_path_factory) -> Iterator[str]:
    """The app on uvicorn over a copy of the test store (fuzzed writes change the copy only);
    assets limited to the sample COGs' folder, so fuzzed URLs are never fetched."""
    directory = tmp_path_factory.mktemp("fuzz-store")
    db = directory / "mosaics.db"
    shutil.copy(api_store.db, db)
    env = {
        **os.environ,
        **api_store.env(),
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"sqlite:///{db}:{{mosaic_id}}",
        "MOSAIC_API_ALLOWED_ASSET_PREFIXES": json.dumps(
            [os.path.dirname(api_store.scene_paths[0]) + "/", str(api_store.directory) + "/"]
        ),
        "MOSAIC_API_MAX_ITEMS": "20",
    }
    with uvicorn_server("lambda_handler.app:create_app", env, directory / "uvicorn.log") as base:
        yield base


@pytest.fixture(scope="session")
def api_schema(fuzz_server):
    """The server's own OpenAPI schema."""
    return schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case):
    # Mostly on the known mosaic, so generated options reach the tile code, not just the 404
    # (not in negative cases: the mosaic id may be what they negate).
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if "mosaic_id" in (case.path_parameters or {}) and case.method == "GET" and positive:
        case.path_parameters["mosaic_id"] = "scenes"
    case.call_and_validate(headers=AUTH, checks=ALL_CHECKS, timeout=60)


# The NaN / huge-number / out-of-range inputs of issue 16, which generation did not find by
# itself, as explicit cases validated with every check (status documented, 422 body schema).
EXPLICIT = [
    ("/mosaics/{mosaic_id}/point/{lon},{lat}", {"lon": 1e300, "lat": 1e300},
     {"coord_crs": "EPSG:3857"}),
    ("/mosaics/{mosaic_id}/point/{lon},{lat}", {"lon": "nan", "lat": 45.4}, {}),
    ("/mosaics/{mosaic_id}/point/{lon},{lat}", {"lon": -78.15, "lat": 45.4}, {"bidx": 25}),
    ("/mosaics/{mosaic_id}/point/{lon},{lat}/assets", {"lon": 1e18, "lat": 1e18},
     {"coord_crs": "EPSG:3857"}),
    ("/mosaics/{mosaic_id}/bbox/{minx},{miny},{maxx},{maxy}/assets",
     {"minx": "nan", "miny": 45, "maxx": -77, "maxy": 46}, {}),
    ("/mosaics/{mosaic_id}/bbox/{minx},{miny},{maxx},{maxy}/assets",
     {"minx": 0, "miny": 0, "maxx": "nan", "maxy": 1}, {}),
    ("/mosaics/{mosaic_id}/bbox/{minx},{miny},{maxx},{maxy}/assets",
     {"minx": 0, "miny": 0, "maxx": "1e400", "maxy": 1}, {}),
] + [
    ("/mosaics/{mosaic_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}",
     {"tileMatrixSetId": "WebMercatorQuad", "z": 9, "x": 144, "y": 183, "format": "png"}, query)
    for query in (
        {"bidx": 99}, {"bidx": 99999999999}, {"bidx": 5}, {"expression": "b99"},
        {"expression": "b5"}, {"expression": "+".join(["b1"] * 5000)}, {"nodata": "nan"},
        {"nodata": "-inf"}, {"nodata": "1e400"},
    )
]  # fmt: skip


@pytest.mark.parametrize(("path", "path_parameters", "query"), EXPLICIT)
def test_explicit_bad_numbers_conform(api_schema, path, path_parameters, query):
    operation = api_schema[path]["GET"]
    case = operation.Case(path_parameters={"mosaic_id": "scenes", **path_parameters}, query=query)
    response = case.call_and_validate(headers=AUTH, checks=ALL_CHECKS, timeout=60)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == ["application/json"]  # header values: lists
