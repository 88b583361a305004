"""The Lambda cold start imports no geospatial stack, and the names that stand in for it match.

The handler builds the app during Lambda's init phase; rasterio, numpy, rio-tiler, morecantile,
pyproj, shapely and boto3 are imported by the first request that needs them. These tests run the
import in a fresh interpreter (as Lambda does) and check the constants and class names the app
uses instead of the libraries against the libraries themselves.
"""

import json
import os
import subprocess
import sys
from typing import get_args

import pytest

from tests.conftest import PROJECT_ROOT

HEAVY = ("rasterio", "numpy", "rio_tiler", "morecantile", "pyproj", "shapely", "boto3", "httpx")

COLD_START = """
import json, sys
import lambda_handler.handler as handler
adapter = handler._api_function.adapter
app = adapter._mangum.app if adapter._mangum is not None else None
out = {"built": app is not None, "loaded": [m for m in HEAVY if m in sys.modules]}
if app is not None:
    from lambda_handler.routes.deferred import DeferredRoutes
    out["deferred_built"] = [r.built for r in app.router.routes if isinstance(r, DeferredRoutes)]
    for path in sys.argv[1:]:
        response = handler.handler({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "example.com"},
            "requestContext": {"http": {"method": "GET", "path": path, "sourceIp": "127.0.0.1"},
                               "stage": "$default"},
            "isBase64Encoded": False,
        })
        out.setdefault("status", []).append(response["statusCode"])
        body = "" if response.get("isBase64Encoded") else response["body"]
        out.setdefault("bodies", []).append(body)
    out["loaded_after"] = [m for m in HEAVY if m in sys.modules]
    out["deferred_built_after"] = [
        r.built for r in app.router.routes if isinstance(r, DeferredRoutes)
    ]
print(json.dumps(out))
"""


def cold_start(*paths: str, template: str = "dynamodb:///mosaics:{mosaic_id}") -> dict:
    """Import the handler in a fresh interpreter made to look like Lambda's init phase (the
    app is built at import), then invoke `paths`; what was imported, and the answers."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MOSAIC_", "_HANDLER"))
    }
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "test-cold-start",
            "_HANDLER": "lambda_handler.handler.handler",
            "AWS_REGION": "us-east-1",
            # Building the app must stay light; the init-time warm-up (which loads the tile
            # path on purpose) is tested in tests/test_snapstart.py.
            "MOSAIC_LAMBDA_WARM_UP": "off",
            "MOSAIC_API_MOSAIC_URI_TEMPLATE": template,
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    code = f"HEAVY = {HEAVY!r}\n{COLD_START}"
    done = subprocess.run(
        [sys.executable, "-c", code, *paths],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cold_start_builds_the_app_without_the_geospatial_stack():
    out = cold_start()
    assert out["built"], "the handler did not build its app during the (simulated) init phase"
    assert out["loaded"] == [], f"imported at cold start: {out['loaded']}"
    # The mosaic read routes wait for their first request.
    assert out["deferred_built"] == [False, False, False]


def test_healthz_and_openapi_stay_light(tmp_path):
    out = cold_start(
        "/healthz", "/openapi.json", template=f"sqlite:///{tmp_path}/m.db:{{mosaic_id}}"
    )
    assert out["status"] == [200, 200]
    assert out["loaded_after"] == [], (
        f"imported by /healthz or /openapi.json: {out['loaded_after']}"
    )
    # Generating the document put the deferred routes in place: it lists them.
    assert out["deferred_built_after"] == []
    paths = json.loads(out["bodies"][1])["paths"]
    for path in (
        "/mosaics",
        "/mosaics/{mosaic_id}/info",
        "/mosaics/{mosaic_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}@{scale}x.{format}",
        "/mosaic/info",
        "/mosaic/point/{lon},{lat}",
    ):
        assert path in paths, path


def test_a_mosaic_request_builds_only_its_routes(tmp_path):
    out = cold_start("/mosaics/nope/info", template=f"sqlite:///{tmp_path}/m.db:{{mosaic_id}}")
    assert out["status"] == [404]
    assert "not found" in out["bodies"][0]
    # Only `/mosaics/{id}/...` built: neither the management routes nor the `/mosaic?url=` form
    # were needed.
    assert out["deferred_built_after"] == [False, True, False]


# ------------------------------------------------------------------ stand-ins vs the libraries
def test_tms_ids_match_morecantile():
    import morecantile

    from lambda_handler.routes.dependencies import TileMatrixSetId, tms_ids

    assert tms_ids() == morecantile.tms.list()
    assert list(get_args(TileMatrixSetId)) == morecantile.tms.list()


def test_tms_ids_follow_a_user_directory(tmp_path, monkeypatch):
    import morecantile

    from lambda_handler.routes.dependencies import tms_ids

    custom = morecantile.tms.get("WebMercatorQuad").model_copy(update={"id": "MyQuad"})
    (tmp_path / "MyQuad.json").write_text(custom.model_dump_json(exclude_none=True))
    monkeypatch.setenv("TILEMATRIXSET_DIRECTORY", str(tmp_path))
    assert "MyQuad" in tms_ids()
    assert set(tms_ids()) == set(morecantile.tms.list()) | {"MyQuad"}


def test_colormap_names_match_rio_tiler():
    from rio_tiler.colormap import cmap

    from lambda_handler.routes.dependencies import ColorMapName, colormap_names

    assert colormap_names() == sorted(cmap.list())
    assert list(get_args(ColorMapName)) == sorted(cmap.list())


def test_method_names_match_rio_tiler():
    from rio_tiler import types
    from rio_tiler.mosaic.methods import PixelSelectionMethod

    from lambda_handler.routes import dependencies

    assert tuple(m.name for m in PixelSelectionMethod) == dependencies.PIXEL_SELECTION_METHODS
    assert get_args(types.RIOResampling) == dependencies.RIO_RESAMPLING_METHODS
    assert get_args(types.WarpResampling) == dependencies.WARP_RESAMPLING_METHODS


def test_error_names_resolve_to_the_library_classes():
    import lambda_handler.reading as reading
    from lambda_handler import api_errors

    named = [cls for cls, _, _ in api_errors.STATUS_CODES if isinstance(cls, str)]
    named += [cls for cls in api_errors.HANDLED if isinstance(cls, str)]
    for name in named:
        resolved = api_errors.resolve(name)
        assert isinstance(resolved, type) and issubclass(resolved, BaseException), name
        assert f"{resolved.__module__}.{resolved.__qualname__}" == name
    assert tuple(api_errors.resolve(n) for n in api_errors.GDAL_ERROR_NAMES) == (
        reading.GDAL_ERRORS
    )


@pytest.mark.parametrize(
    ("error", "status", "field"),
    [
        ("rio_tiler.errors.TileOutsideBounds", 404, None),
        ("rio_tiler.errors.InvalidBandName", 422, "bidx"),
        ("morecantile.errors.InvalidIdentifier", 422, "tileMatrixSetId"),
        ("pyproj.exceptions.CRSError", 422, "coord_crs"),
        ("rasterio.errors.RasterioIOError", 424, None),
    ],
)
def test_library_errors_are_mapped_by_class(error, status, field):
    import importlib

    from lambda_handler.api_errors import is_handled, status_for

    module, _, name = error.rpartition(".")
    instance = getattr(importlib.import_module(module), name)("boom")
    assert is_handled(instance)
    assert status_for(instance) == (status, field)
    assert not is_handled(ValueError("a bug"))


def test_lazy_reexports():
    from rio_tiler.errors import NoAssetFoundError

    import lambda_handler.backends as backends
    import lambda_handler.errors as errors
    from lambda_handler.backends.base import MosaicJSONBackend

    assert errors.NoAssetFoundError is NoAssetFoundError
    assert backends.MosaicJSONBackend is MosaicJSONBackend
    with pytest.raises(AttributeError):
        _ = errors.NotAThing


# ------------------------------------------------------------------ deferred routes
def _group_app(built: list[str]):
    from fastapi import APIRouter, FastAPI

    from lambda_handler.routes.deferred import DeferredRoutes, document_deferred_routes

    def things() -> APIRouter:
        built.append("things")
        router = APIRouter(prefix="/things")

        @router.get("/{thing}", name="things:get")
        def get_thing(thing: int) -> dict:
            return {"thing": thing}

        return router

    app = FastAPI()
    app.router.routes.append(
        DeferredRoutes(["/things/..."], lambda n: n.startswith("things:"), things)
    )
    document_deferred_routes(app)

    @app.post("/things/{thing}", name="post_thing")
    def post_thing(thing: str) -> dict:
        return {"posted": thing}

    return app


def test_deferred_routes_match_like_routes_in_place():
    from fastapi.testclient import TestClient

    built: list[str] = []
    client = TestClient(_group_app(built))
    assert client.get("/other").status_code == 404 and built == []
    assert client.post("/things/a").json() == {"posted": "a"}  # a later full match wins
    assert built == ["things"]
    assert client.get("/things/3").json() == {"thing": 3}
    assert client.get("/things/x").status_code == 422  # the route's own validation
    assert client.delete("/things/3").status_code == 405  # partial match: method not allowed
    assert built == ["things"]  # built once


def test_deferred_routes_reverse_urls_and_document_themselves():
    built: list[str] = []
    app = _group_app(built)
    assert app.url_path_for("post_thing", thing="b") == "/things/b" and built == []
    assert app.url_path_for("things:get", thing="4") == "/things/4" and built == ["things"]
    assert set(app.openapi()["paths"]["/things/{thing}"]) == {"get", "post"}


def test_deferred_routes_check_their_routes():
    from fastapi import APIRouter

    from lambda_handler.routes.deferred import DeferredRoutes

    def elsewhere() -> APIRouter:
        router = APIRouter()
        router.add_api_route("/elsewhere", lambda: None, name="x:elsewhere")
        return router

    with pytest.raises(ValueError, match="not one of the group's paths"):
        _ = DeferredRoutes(["/things/..."], lambda n: n.startswith("x:"), elsewhere).routes
    with pytest.raises(ValueError, match="not one of the group's names"):
        _ = DeferredRoutes(["/elsewhere"], lambda n: n.startswith("y:"), elsewhere).routes
