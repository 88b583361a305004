"""Fuzz every operation of the OpenAPI schema against the uvicorn server: never a 5xx."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

# Examples per operation: enough to reach every parameter's odd values, bounded for CI time.
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "8"))


@pytest.fixture(scope="session")
def api_schema(api_server):
    """The server's own OpenAPI schema."""
    return schemathesis.openapi.from_url(f"{api_server}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case):
    # Mostly on the known mosaic, so generated options reach the tile code, not just the 404.
    if "mosaic_id" in (case.path_parameters or {}) and case.method == "GET":
        case.path_parameters["mosaic_id"] = "scenes"
    response = case.call(timeout=60)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}: "
        f"{response.text[:500]}"
    )
