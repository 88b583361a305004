"""One read path: every entry point reads a mosaic alike and renders the same pixels.

- `MosaicBackend(uri)` (library, CLI, local export) and the API's `open_backend` choose the same
  reader (by the mosaic's asset type) and the same zooms (translated to the request's TMS).
- The same COG mosaic and the same STAC-item mosaic, exported locally (`uri` mode), exported
  through the endpoint (the API served by uvicorn) and rendered tile by tile by that API, with
  non-default options, give identical pixels.
- Every query parameter `TileOptions.query()` can emit is one the tile route accepts.
"""

import io
import json

import httpx
import morecantile
import numpy as np
import pytest
import rasterio

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.zooms import zoom_range
from lambda_handler.export import ExportRun, ExportTiles, TileOptions, export_mosaic, plan_export
from lambda_handler.mosaic.builder import from_features
from lambda_handler.routes.common import open_backend
from tests.servers_api import _write
from tests.stac_catalog import write_test_catalog

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
WORLD_CRS84 = morecantile.tms.get("WorldCRS84Quad")
STAC_MOSAIC = "read-path-stac"
COG_MOSAIC = "read-path-cogs"
STAC_ZOOMS = (7, 10)

# Areas and zooms of the exports (a few tiles each, some of them partly empty).
COG_AREA, COG_ZOOM = (-78.3, 45.3, -78.0, 45.5), 10
STAC_AREA, STAC_ZOOM = (10.0, 45.6, 11.3, 46.1), 9

# Non-default options of every kind: band choice, pixel selection, rescale, color formula.
COG_OPTIONS = TileOptions(
    bidx=(3, 2, 1),
    pixel_selection="highest",
    rescale=((20.0, 180.0),),
    color_formula="gamma RGB 1.7, saturation 1.3",
)
# One band: a 2-band GeoTIFF reads as gray + alpha in GDAL, which would hide the mask.
STAC_OPTIONS = TileOptions(
    assets=("B02",),
    pixel_selection="lowest",
    rescale=((90.0, 115.0),),
    color_formula="gamma R 1.5, sigmoidal R 10 0.4",
)


@pytest.fixture(scope="module")
def stac_mosaic_uri(api_store, tmp_path_factory) -> str:
    """A static mosaic of STAC items (item JSON files whose assets are COGs), in the API store."""
    directory = tmp_path_factory.mktemp("read-path-stac")
    _, items = write_test_catalog(directory)
    item_urls = {}
    for item in items[:10]:
        path = directory / f"{item['id']}.json"
        path.write_text(json.dumps(item))
        item_urls[item["id"]] = str(path)
    document = from_features(
        items[:10],
        *STAC_ZOOMS,
        accessor=lambda item: item_urls[item["id"]],
        asset_type="stac-item",
        name=STAC_MOSAIC,
    )
    uri = api_store.uri(STAC_MOSAIC)
    with MosaicBackend(uri, mosaic_def=document) as backend:
        backend.write(overwrite=True)
    return uri


@pytest.fixture(scope="module")
def cog_mosaic_uri(api_store, sample_cogs) -> str:
    """A mosaic of the sample COGs, in the API store."""
    uri = api_store.uri(COG_MOSAIC)
    _write(uri, list(sample_cogs), minzoom=8, maxzoom=12, name=COG_MOSAIC)
    return uri


# ---------------------------------------------------------------------------- reader and zooms
def _opened_alike(uri: str, tms: morecantile.TileMatrixSet) -> tuple[type, int, int]:
    with MosaicBackend(uri, tms=tms) as library, open_backend(uri, tms) as api:
        assert library.reader is api.reader
        assert (library.minzoom, library.maxzoom) == (api.minzoom, api.maxzoom)
        return library.reader, library.minzoom, library.maxzoom


def test_stac_mosaic_is_read_by_the_stac_reader_everywhere(stac_mosaic_uri):
    from lambda_handler.backends.readers import stac_reader

    with MosaicBackend(stac_mosaic_uri) as backend:  # the library's, CLI's and export's form
        assert backend.reader is stac_reader()
        assert (backend.minzoom, backend.maxzoom) == STAC_ZOOMS
    assert _opened_alike(stac_mosaic_uri, WEB_MERCATOR) == (stac_reader(), *STAC_ZOOMS)


def test_cog_mosaic_is_read_by_the_asset_reader_everywhere(cog_mosaic_uri):
    from lambda_handler.reading import AssetReader

    assert _opened_alike(cog_mosaic_uri, WEB_MERCATOR) == (AssetReader, 8, 12)


@pytest.mark.parametrize("mosaic", ["stac", "cog"])
def test_zooms_are_translated_to_another_tms_everywhere(mosaic, stac_mosaic_uri, cog_mosaic_uri):
    uri = stac_mosaic_uri if mosaic == "stac" else cog_mosaic_uri
    with MosaicBackend(uri) as backend:
        mosaic_zooms = (backend.mosaic_def.minzoom, backend.mosaic_def.maxzoom)
    _, minzoom, maxzoom = _opened_alike(uri, WORLD_CRS84)
    assert (minzoom, maxzoom) == zoom_range(WEB_MERCATOR, *mosaic_zooms, WORLD_CRS84)
    # WorldCRS84Quad's zoom z has about WebMercatorQuad's z+1 resolution: not its full range.
    assert (minzoom, maxzoom) != (WORLD_CRS84.minzoom, WORLD_CRS84.maxzoom)
    assert mosaic_zooms[0] - 2 <= minzoom <= mosaic_zooms[0]


# ---------------------------------------------------------------------------- tile options
def test_every_tile_option_is_a_query_parameter_of_the_tile_route(api_store):
    from lambda_handler.app import create_app

    everything = TileOptions(
        assets=("B01", "B02"),
        bidx=(1, 2),
        expression="b1/b2",
        pixel_selection="median",
        nodata=0,
        unscale=True,
        resampling="bilinear",
        reproject="bilinear",
        buffer=2,
        padding=1,
        rescale=((0, 1), (0, 2)),
        color_formula="gamma RGB 2",
    )
    emitted = {name for name, _ in everything.query()}
    assert len(emitted) == 12, "every field of TileOptions is emitted when set"
    document = create_app(api_store.settings).openapi()
    tile_path = next(
        p for p in document["paths"] if p.endswith("/tiles/{tileMatrixSetId}/{z}/{x}/{y}")
    )
    accepted = {
        parameter["name"]
        for parameter in document["paths"][tile_path]["get"]["parameters"]
        if parameter["in"] == "query"
    }
    assert emitted <= accepted, emitted - accepted


# ---------------------------------------------------------------------------- pixel identity
def _api_tiles(base: str, mosaic_id: str, zoom: int, area, options: TileOptions) -> dict:
    """Each tile of the export area as the API renders it (`.npy`: data bands + mask)."""
    tiles = {}
    query = [*options.query(), ("return_mask", "true")]
    with httpx.Client(base_url=base, timeout=60) as client:
        for x, y in plan_export(zoom, bbox=area).tiles:
            response = client.get(
                f"/mosaics/{mosaic_id}/tiles/WebMercatorQuad/{zoom}/{x}/{y}.npy", params=query
            )
            if response.status_code == 204:
                tiles[(x, y)] = None
                continue
            assert response.status_code == 200, response.text
            array = np.load(io.BytesIO(response.content))
            tiles[(x, y)] = (array[:-1], array[-1])
    return tiles


def _read(path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as src:
        return src.read(), src.dataset_mask()


@pytest.mark.parametrize("mosaic", ["cog", "stac"])
def test_local_export_endpoint_export_and_api_tiles_have_identical_pixels(
    mosaic, stac_mosaic_uri, cog_mosaic_uri, api_server, tmp_path
):
    if mosaic == "cog":
        uri, mosaic_id, area, zoom, options = (
            cog_mosaic_uri, COG_MOSAIC, COG_AREA, COG_ZOOM, COG_OPTIONS
        )  # fmt: skip
    else:
        uri, mosaic_id, area, zoom, options = (
            stac_mosaic_uri, STAC_MOSAIC, STAC_AREA, STAC_ZOOM, STAC_OPTIONS
        )  # fmt: skip
    tiles, run = ExportTiles(options), ExportRun(concurrency=2, seed=0)
    local = export_mosaic(tmp_path / "local.tif", zoom, bbox=area, uri=uri, tiles=tiles, run=run)
    remote = export_mosaic(
        tmp_path / "remote.tif", zoom, bbox=area, endpoint=api_server, mosaic_id=mosaic_id,
        tiles=tiles, run=run,
    )  # fmt: skip
    assert local.assembled and remote.assembled and not local.failed and not remote.failed
    local_data, local_mask = _read(tmp_path / "local.tif")
    remote_data, remote_mask = _read(tmp_path / "remote.tif")
    assert local_mask.any(), "the area has data"
    assert not local_mask.all(), "and nodata: masks are compared too"
    assert np.array_equal(local_mask, remote_mask)
    valid = local_mask > 0
    assert np.array_equal(local_data[:, valid], remote_data[:, valid])

    plan = plan_export(zoom, bbox=area)
    compared = 0
    for (x, y), tile in _api_tiles(api_server, mosaic_id, zoom, area, options).items():
        col, row = plan.window(x, y)
        window = (slice(None), slice(row, row + 256), slice(col, col + 256))
        exported_mask = local_mask[window[1:]]
        if tile is None:
            assert not exported_mask.any()
            continue
        data, mask = tile
        assert np.array_equal(exported_mask > 0, mask > 0), (x, y)
        inside = mask > 0
        assert np.array_equal(local_data[window][:, inside], data[:, inside]), (x, y)
        compared += 1
    assert compared >= 2
    # The options changed the pixels: an export with the same bands and default options differs.
    plain_tiles = ExportTiles(TileOptions(assets=options.assets))
    plain = export_mosaic(
        tmp_path / "plain.tif", zoom, bbox=area, uri=uri, tiles=plain_tiles, run=run
    )
    assert plain.assembled
    plain_data, _ = _read(tmp_path / "plain.tif")
    assert plain_data.shape != local_data.shape or not np.array_equal(
        plain_data[:, valid], local_data[:, valid]
    )


def test_library_reads_relative_asset_paths_the_api_refuses(sample_cogs, tmp_path, monkeypatch):
    """The library (and the CLI's local export) reads what its mosaic names, relative paths
    included, as `MosaicBackend.tile()` does; the API's guard refuses a path that is not
    absolute (it cannot tell what it is relative to)."""
    import shutil

    from lambda_handler.reading import AssetNotAllowedError, ReadGuard, read_tile
    from lambda_handler.tile_pipeline import TileOptions, read_tile_image

    (tmp_path / "cogs").mkdir()
    relative = []
    for path in sample_cogs[:2]:
        shutil.copy(path, tmp_path / "cogs")
        relative.append(f"cogs/{path.rsplit('/', 1)[-1]}")
    monkeypatch.chdir(tmp_path)
    document = from_features(
        [_footprint_of(path, asset) for path, asset in zip(sample_cogs, relative, strict=False)],
        minzoom=9,
        maxzoom=12,
    )
    lon, lat = -78.15, 45.40
    tile = WEB_MERCATOR.tile(lon, lat, 10)
    with MosaicBackend(":memory:", mosaic_def=document) as backend:
        image, used, _ = read_tile_image(backend, tile.x, tile.y, tile.z, TileOptions())
        assert used and all(asset.startswith("cogs/") for asset in used)
        assert image.mask.any()
        with pytest.raises(AssetNotAllowedError, match="neither an absolute path nor a URL"):
            read_tile(backend, tile.x, tile.y, tile.z, pixel_selection=_first(),
                      threads=1, guard=ReadGuard())  # fmt: skip


def test_read_errors_cross_process_boundaries_whole():
    """The export's worker processes send errors back pickled: every read error must come back
    as itself (its __init__ takes more than the message, which default pickling cannot call)."""
    import pickle

    from lambda_handler.errors import MosaicNotFoundError
    from lambda_handler.reading import AssetNotAllowedError, AssetReadError, InvalidReadOptionError

    errors = [
        AssetReadError("s3://bucket/a.tif", "HTTP 403"),
        AssetNotAllowedError("file:///etc/x.tif", "not under an allowed prefix"),
        InvalidReadOptionError("bidx", "asset a.tif has 3 bands"),
        MosaicNotFoundError("no mosaic 'x'"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


def _first() -> type:
    from rio_tiler.mosaic.methods import PixelSelectionMethod

    return PixelSelectionMethod.first.value


def _footprint_of(path: str, asset: str) -> dict:
    from lambda_handler.mosaic.footprints import dataset_footprint

    feature = dataset_footprint(path)
    feature["properties"]["path"] = asset
    return feature
