"""Tiles and points rendered through rio-tiler from stored mosaics, every pixel selection."""

import numpy as np
import pytest
from rio_tiler.io import Reader
from rio_tiler.mosaic.methods import PixelSelectionMethod

from lambda_handler.backends import MosaicBackend
from lambda_handler.errors import NoAssetFoundError
from lambda_handler.mosaic import from_urls
from lambda_handler.sample_data import SCENES, scene_value


@pytest.fixture(scope="module")
def stored_uri(sample_cogs, tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('render') / 'mosaics.db'}:scenes"
    with MosaicBackend(uri, mosaic_def=from_urls(sample_cogs, quadkey_zoom=8)) as backend:
        backend.write()
    return uri


def overlap_tile(backend, zoom=10):
    """A tile where scenes b and c overlap (both listed)."""
    lon = (SCENES[1].center_lon + SCENES[2].center_lon) / 2
    lat = (SCENES[1].center_lat + SCENES[2].center_lat) / 2
    return backend.tms.tile(lon, lat, zoom)


def reference(assets, tile, method):
    """Each asset read on its own, combined with numpy: what the mosaic must give."""
    stack = []
    for asset in assets:
        with Reader(asset) as src:
            if src.tile_exists(*tile):
                stack.append(src.tile(*tile).array)
    data = np.ma.stack(stack)
    if method == "first":
        out = stack[0].copy()
        for layer in stack[1:]:
            out = np.ma.where(np.ma.getmaskarray(out), layer, out)
        return out
    if method == "highest":
        return data.max(axis=0)
    if method == "lowest":
        return data.min(axis=0)
    if method == "count":
        return (~np.ma.getmaskarray(data)).sum(axis=0)
    raise AssertionError(method)


@pytest.mark.parametrize("method", ["first", "highest", "lowest", "count"])
def test_pixel_selection_matches_per_asset_reads(stored_uri, method):
    with MosaicBackend(stored_uri) as backend:
        tile = overlap_tile(backend)
        assets = backend.assets_for_tile(*tile)
        assert len(assets) >= 2
        image, used = backend.tile(*tile, pixel_selection=PixelSelectionMethod[method].value())
    expected = reference(assets, tile, method)
    got = image.array
    valid = ~np.ma.getmaskarray(expected)
    if method == "count":
        assert np.array_equal(np.asarray(got[0]), np.asarray(expected[0]))
        assert got.max() == 2, "two scenes overlap somewhere in the tile"
    else:
        assert np.array_equal(np.asarray(got)[valid], np.asarray(expected)[valid])
    assert set(used) <= set(assets)


@pytest.mark.parametrize("method", ["mean", "median", "stdev", "lastbandlow", "lastbandhigh"])
def test_statistical_pixel_selections(stored_uri, method):
    with MosaicBackend(stored_uri) as backend:
        tile = overlap_tile(backend)
        assets = backend.assets_for_tile(*tile)
        image, _ = backend.tile(*tile, pixel_selection=PixelSelectionMethod[method].value())
    highest = reference(assets, tile, "highest").astype("float64")
    lowest = reference(assets, tile, "lowest").astype("float64")
    count = reference(assets, tile, "count")
    both = (count[0] == 2) & ~np.ma.getmaskarray(image.array[0])
    assert both.any()
    got = np.asarray(image.array, dtype="float64")[:, both]
    hi, lo = np.asarray(highest)[:, both], np.asarray(lowest)[:, both]
    if method in ("mean", "median"):
        assert np.allclose(got, (hi + lo) / 2, atol=1)
    elif method == "stdev":
        assert np.allclose(got, (hi - lo) / 2, atol=1)
    else:
        # the last band decides which asset gives the pixel, and is dropped from the output
        assert got.shape[0] == 2
        assert np.allclose(got, (lo if method == "lastbandlow" else hi)[:2])


def test_point_values_name_their_assets(stored_uri):
    scene = SCENES[1]
    with MosaicBackend(stored_uri) as backend:
        values = backend.point(scene.center_lon, scene.center_lat)
    by_asset = {asset: point.array for asset, point in values}
    scene_b = next(a for a in by_asset if "scene_b" in a)
    band_values = [int(v) for v in by_asset[scene_b]]
    gradient = band_values[0] - scene_value(1, 1)
    assert 0 <= gradient <= 8
    assert band_values == [scene_value(1, band) + gradient for band in (1, 2, 3)]


def test_tile_without_assets_raises(stored_uri):
    with MosaicBackend(stored_uri) as backend, pytest.raises(NoAssetFoundError):
        backend.tile(0, 0, 9)


def test_real_value_fixtures(shared_fixtures, tmp_path):
    paths = [str(shared_fixtures / f"mosaic_value_{i}.tif") for i in (1, 2)]
    mosaic = from_urls(paths)
    with MosaicBackend(None, mosaic_def=mosaic) as backend:
        # a point inside both scenes (their UTM extents overlap between x=547185 and 658814)
        lon, lat = -74.3, 45.95
        tile = backend.tms.tile(lon, lat, 9)
        first, _ = backend.tile(*tile)
        highest, _ = backend.tile(*tile, pixel_selection=PixelSelectionMethod.highest.value())
        lowest, _ = backend.tile(*tile, pixel_selection=PixelSelectionMethod.lowest.value())
        count, _ = backend.tile(*tile, pixel_selection=PixelSelectionMethod.count.value())
    both = np.asarray(count.array[0]) == 2
    assert both.any()
    assert set(np.unique(np.asarray(first.array[0])[both])) == {1}
    assert set(np.unique(np.asarray(highest.array[0])[both])) == {2}
    assert set(np.unique(np.asarray(lowest.array[0])[both])) == {1}


def test_cogeo_mosaic_documents_give_the_assets_they_list(shared_fixtures):
    import json

    document = json.loads((shared_fixtures / "mosaic.json").read_text())
    for uri in (
        str(shared_fixtures / "mosaic.json"),
        str(shared_fixtures / "mosaic.json.gz"),
        str(shared_fixtures / "mosaic_0.0.1.json"),
        f"sqlite:///{shared_fixtures / 'mosaics.db'}:test",
    ):
        with MosaicBackend(uri) as backend:
            for quadkey, assets in document["tiles"].items():
                tile = backend.tms.quadkey_to_tile(quadkey)
                assert backend.assets_for_tile(*tile) == assets, (uri, quadkey)
            assert backend.to_document().tiles == document["tiles"]


def test_cogeo_mosaic_fixture_renders_with_asset_prefix(shared_fixtures):
    import json

    document = json.loads((shared_fixtures / "mosaic.json").read_text())
    document["asset_prefix"] = str(shared_fixtures) + "/"
    with MosaicBackend(None, mosaic_def=document) as backend:
        tile = backend.tms.quadkey_to_tile("0302301")
        image, used = backend.tile(*tile)
    assert used[0] == str(shared_fixtures / "cog1.tif")
    assert image.array.shape == (3, 256, 256)
    assert not np.ma.getmaskarray(image.array).all()


def test_old_sqlite_file_can_be_updated(shared_fixtures, tmp_path):
    import shutil
    import sqlite3

    db = tmp_path / "mosaics.db"
    shutil.copy(shared_fixtures / "mosaics.db", db)
    uri = f"sqlite:///{db}:test"
    feature = {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-74, 45.5], [-73.5, 45.5], [-73.5, 46], [-74, 46], [-74, 45.5]]],
        },
        "properties": {"path": "new.tif"},
    }
    with MosaicBackend(uri) as backend:
        backend.update([feature])
    with MosaicBackend(uri) as backend:
        tiles = backend.to_document().tiles
        assert backend.mosaic_def.version == "1.0.1"
    assert any(assets[0] == "new.tif" for assets in tiles.values())
    with sqlite3.connect(db) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(mosaicjson_metadata)")}
        assert {"tilematrixset", "asset_prefix", "layers"} <= columns
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 3


def test_adjustment_then_encoding():
    """The tile pipeline's rendering = `adjust_image` (rescale, color formula: what the route
    and the export's workers apply) followed by `encode_image` (the route only); a rescale that
    does not fit the bands names `rescale`."""
    from rio_tiler.models import ImageData

    from lambda_handler.rendering import RenderError, adjust_image, encode_image

    def image() -> ImageData:
        data = np.arange(3 * 32 * 32, dtype="uint16").reshape(3, 32, 32)
        mask = np.zeros_like(data, dtype=bool)
        mask[:, :4] = True
        return ImageData(np.ma.MaskedArray(data, mask=mask))

    options = {"rescale": [(0.0, 2000.0)], "color_formula": "gamma RGB 1.5"}
    adjusted = adjust_image(image(), **options)
    assert adjusted.data.dtype == np.uint8
    body, media_type = encode_image(adjusted)
    assert media_type == "image/png"  # masked pixels: PNG, with the mask as alpha
    assert body.startswith(b"\x89PNG")
    with pytest.raises(RenderError) as raised:
        adjust_image(image(), rescale=[(0.0, 1.0), (0.0, 2.0)])
    assert raised.value.field == "rescale"
