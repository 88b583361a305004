"""Exports rendered in-process: a valid COG, right georeferencing, same pixels as single tiles."""

import datetime as dt

import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from lambda_handler.backends import MosaicBackend
from lambda_handler.export import (
    ExportOutput,
    ExportRun,
    ExportTiles,
    ProgressSink,
    TileOptions,
    export_mosaic,
    plan_export,
)
from lambda_handler.export.plan import ExportError
from lambda_handler.export.renderers import render_tile_arrays
from lambda_handler.export.sigv4 import Credentials, region_from_url, sign
from lambda_handler.mosaic import from_urls

TMS = morecantile.tms.get("WebMercatorQuad")
AREA = (-78.55, 45.0, -77.5, 45.7)


@pytest.fixture(scope="module")
def mosaic_uri(sample_cogs, tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("export") / "scenes.json")
    with MosaicBackend(uri, mosaic_def=from_urls(sample_cogs, minzoom=8, maxzoom=12)) as backend:
        backend.write()
    return uri


def test_plan_covers_the_area():
    plan = plan_export(10, bbox=AREA, tile_scale=2)
    expected = {(t.x, t.y) for t in TMS.tiles(*AREA, [10])}
    assert set(plan.tiles) == expected
    assert plan.tile_size == 512
    assert plan.width == (plan.max_x - plan.min_x + 1) * 512
    left, _, _, top = TMS.xy_bounds(plan.min_x, plan.min_y, 10)
    assert (plan.transform.c, plan.transform.f) == pytest.approx((left, top))


def test_plan_from_geojson_keeps_only_intersecting_tiles():
    triangle = {
        "type": "Polygon",
        "coordinates": [[[-78.5, 45.0], [-77.5, 45.0], [-78.5, 45.7], [-78.5, 45.0]]],
    }
    plan = plan_export(10, geojson=triangle)
    box_plan = plan_export(10, bbox=(-78.5, 45.0, -77.5, 45.7))
    assert set(plan.tiles) < set(box_plan.tiles)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bbox": (1, 1, 0, 2)}, "invalid bbox"),
        ({}, "exactly one area"),
        ({"bbox": AREA, "tile_scale": 7}, "tile_scale"),
    ],
)
def test_plan_errors(kwargs, message):
    with pytest.raises(ExportError, match=message):
        plan_export(10, **kwargs)


def test_in_process_export_matches_single_tiles(mosaic_uri, tmp_path):
    output = tmp_path / "export.tif"
    options = TileOptions(pixel_selection="highest")
    report = export_mosaic(
        output,
        10,
        bbox=AREA,
        uri=mosaic_uri,
        tiles=ExportTiles(options),
        run=ExportRun(concurrency=2),
    )
    assert report.assembled and not report.failed
    assert report.rendered == report.tiles
    assert not (tmp_path / "export.tif.tiles").exists(), "kept tiles removed after assembly"

    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(str(output))
    assert valid, errors

    plan = plan_export(10, bbox=AREA)
    with rasterio.open(output) as src, MosaicBackend(mosaic_uri) as backend:
        assert src.crs.to_epsg() == 3857
        assert src.count == 3 and src.dtypes[0] == "uint8"
        assert src.overviews(1), "the COG has overviews"
        west, _, _, north = TMS.xy_bounds(plan.min_x, plan.min_y, 10)
        _, south, east, _ = TMS.xy_bounds(plan.max_x, plan.max_y, 10)
        assert tuple(src.bounds) == pytest.approx((west, south, east, north))
        compared = 0
        for x, y in plan.tiles:
            expected = render_tile_arrays(backend, x, y, 10, 256, options)
            col, row = plan.window(x, y)
            window = Window(col, row, 256, 256)
            mask = src.read_masks(1, window=window)
            if expected is None:
                assert not mask.any()
                continue
            data, expected_mask = expected
            assert np.array_equal(mask > 0, expected_mask > 0)
            got = src.read(window=window)
            assert np.array_equal(got[:, mask > 0], data[:, mask > 0])
            compared += 1
        assert compared >= 4


class StopAfter(ProgressSink):
    """Interrupts the export like Ctrl-C after a number of tiles."""

    def __init__(self, count: int):
        self.count = count
        self.seen = 0

    def advance(self, failed: bool) -> None:
        self.seen += 1
        if self.seen == self.count:
            raise KeyboardInterrupt


def test_interrupted_export_resumes_with_missing_tiles_only(mosaic_uri, tmp_path):
    output = tmp_path / "resumed.tif"
    with pytest.raises(KeyboardInterrupt):
        export_mosaic(
            output,
            10,
            bbox=AREA,
            uri=mosaic_uri,
            run=ExportRun(concurrency=1, progress=StopAfter(5)),
        )
    kept = list((tmp_path / "resumed.tif.tiles").glob("10-*"))
    assert len(kept) >= 5
    assert not output.exists()

    report = export_mosaic(output, 10, bbox=AREA, uri=mosaic_uri, run=ExportRun(concurrency=2))
    assert report.reused == len(kept)
    assert report.rendered == report.tiles - len(kept)
    assert report.assembled and output.exists()


def test_resume_refuses_tiles_of_another_export(mosaic_uri, tmp_path):
    output = tmp_path / "mixed.tif"
    export_mosaic(
        ExportOutput(output, keep_tiles=True),
        10,
        bbox=AREA,
        uri=mosaic_uri,
        run=ExportRun(concurrency=2),
    )
    with pytest.raises(ExportError, match="different export"):
        export_mosaic(output, 11, bbox=AREA, uri=mosaic_uri, run=ExportRun(concurrency=2))


def test_empty_area_is_an_error_not_an_empty_cog(mosaic_uri, tmp_path):
    with pytest.raises(ExportError, match="no data"):
        export_mosaic(
            tmp_path / "empty.tif",
            10,
            bbox=(10, 10, 10.5, 10.5),
            uri=mosaic_uri,
            run=ExportRun(concurrency=1),
        )


# ---------------------------------------------------------------------------- SigV4
@pytest.mark.parametrize("token", [None, "session-token-value"])
def test_sigv4_matches_botocore(monkeypatch, token):
    from botocore import auth as botocore_auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    now = dt.datetime(2026, 11, 21, 12, 30, 45)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda *a, **k: now)
    url = (
        "https://abcdefghij.lambda-url.eu-west-1.on.aws/mosaics/my-mosaic/tiles/WebMercatorQuad/"
        "12/2048/1361@2x.npy?pixel_selection=median&rescale=0%2C3000&assets=B04&assets=B03"
        "&return_mask=true"
    )
    headers = {"Accept": "application/x-binary"}
    request = AWSRequest(method="GET", url=url, headers=dict(headers))
    botocore_auth.SigV4Auth(
        BotoCredentials("AKIDEXAMPLE", "secret/key", token), "lambda", "eu-west-1"
    ).add_auth(request)
    ours = sign(
        "GET",
        url,
        headers,
        Credentials("AKIDEXAMPLE", "secret/key", token),
        region_from_url(url),
        now=now.replace(tzinfo=dt.UTC),
    )
    assert region_from_url(url) == "eu-west-1"
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    if token:
        assert ours["X-Amz-Security-Token"] == token


def test_zoom_outside_the_mosaic_is_refused(mosaic_uri, tmp_path):
    with pytest.raises(ExportError, match=r"zoom 14 is outside the mosaic's zooms \(8-12\)"):
        export_mosaic(
            tmp_path / "deep.tif", 14, bbox=AREA, uri=mosaic_uri, run=ExportRun(concurrency=1)
        )
