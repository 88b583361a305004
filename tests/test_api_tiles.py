"""Read endpoints through the ASGI app (httpx, in process) and a real uvicorn server."""

import io
import xml.etree.ElementTree as ET

import httpx
import morecantile
import numpy as np
import pytest
from rasterio.io import MemoryFile

from lambda_handler.routes.dependencies import PIXEL_SELECTION_METHODS
from lambda_handler.sample_data import scene_value

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
# Inside scene a only (see lambda_handler.sample_data.SCENES).
SCENE_A_ONLY = (-78.40, 45.20)
# Where scenes a, b and c overlap.
OVERLAP = (-78.15, 45.40)
METHODS = list(PIXEL_SELECTION_METHODS)


def tile_of(lon: float, lat: float, z: int, tms=WEB_MERCATOR) -> tuple[int, int, int]:
    """(z, x, y) of the tile holding a point."""
    tile = tms.tile(lon, lat, z)
    return tile.z, tile.x, tile.y


def npy(response: httpx.Response) -> np.ma.MaskedArray:
    """A masked array from an npy tile (last band = mask, 255 valid)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-binary"
    array = np.load(io.BytesIO(response.content))
    data, mask = array[:-1], array[-1]
    return np.ma.MaskedArray(data, mask=np.repeat((mask == 0)[None], len(data), axis=0))


def scene_index(values: np.ndarray, band: int = 1) -> np.ndarray:
    """Which scene a band value comes from (values encode scene, band and a small gradient)."""
    return (np.asarray(values, dtype=int) - band) // 40 - 1


# ---------------------------------------------------------------------------- documents
def test_healthz_openapi_docs(client):
    assert client.get("/healthz").json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    assert "/mosaics/{mosaic_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}" in schema["paths"]
    assert "swagger" in client.get("/docs").text.lower()


def test_metadata_info_bounds(client, api_store):
    meta = client.get("/mosaics/scenes").json()
    assert meta["name"] == "scenes" and "tiles" not in meta
    full = client.get("/mosaics/scenes", params={"tiles": "true"}).json()
    assert full["tiles"] and all(len(k) == full["quadkey_zoom"] for k in full["tiles"])
    info = client.get("/mosaics/scenes/info").json()
    assert info["mosaic_minzoom"] == meta["minzoom"] and info["quadkeys"] == []
    assert sorted(client.get("/mosaics/scenes/info?quadkeys=true").json()["quadkeys"]) == sorted(
        full["tiles"]
    )
    bounds = client.get("/mosaics/scenes/bounds").json()
    assert bounds["bounds"] == pytest.approx(meta["bounds"])
    assert "4326" in bounds["crs"]


def test_tilejson_echoes_options(client):
    tj = client.get(
        "/mosaics/scenes/tilejson.json",
        params={"tile_format": "webp", "tile_scale": 2, "rescale": "0,200"},
    ).json()
    assert tj["tilejson"] == "3.0.0"
    assert (
        "/mosaics/scenes/tiles/WebMercatorQuad/{z}/{x}/{y}@2x.webp?rescale=0%2C200"
        in (tj["tiles"][0])
    )
    meta = client.get("/mosaics/scenes").json()
    assert (tj["minzoom"], tj["maxzoom"]) == (meta["minzoom"], meta["maxzoom"])
    # The URL works as given.
    z, x, y = tile_of(*OVERLAP, tj["minzoom"])
    url = tj["tiles"][0].format(z=z, x=x, y=y)
    response = client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"


def test_wmts_capabilities(client):
    response = client.get("/mosaics/scenes/WMTSCapabilities.xml", params={"tile_format": "png"})
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    url = root.find(".//w:Layer/w:ResourceURL", ns).attrib["template"]
    assert "{TileMatrix}/{TileCol}/{TileRow}.png" in url
    meta = client.get("/mosaics/scenes").json()
    # Every supported TMS is offered (as titiler's document), the requested one first.
    first = root.find("w:Contents/w:TileMatrixSet", ns)
    assert first.find("ows:Identifier", ns).text == "WebMercatorQuad"
    ids = [e.text for e in first.findall("w:TileMatrix/ows:Identifier", ns)]
    assert ids == [str(z) for z in range(meta["minzoom"], meta["maxzoom"] + 1)]
    z, x, y = tile_of(*OVERLAP, meta["minzoom"])
    url = url.replace("{TileMatrixSet}", "WebMercatorQuad")
    tile_url = url.replace("{TileMatrix}", str(z)).replace("{TileCol}", str(x))
    assert client.get(tile_url.replace("{TileRow}", str(y))).status_code == 200


@pytest.mark.parametrize("tms_id", ["WebMercatorQuad", "WorldCRS84Quad"])
def test_owslib_gettile_serves_the_tile_route_pixels(api_server, tms_id):
    """OWSLib (a real WMTS client) reads the capabilities over HTTP and its `gettile()`
    (RESTful GetTile through the ResourceURL) answers the tile route's pixels, in the
    requested set and in another set the document lists."""
    from owslib.wmts import WebMapTileService

    service = WebMapTileService(
        f"{api_server}/mosaics/scenes/WMTSCapabilities.xml?tile_format=png", timeout=60
    )
    assert "GetTile" in [op.name for op in service.operations]
    (layer,) = service.contents
    assert tms_id in service.contents[layer].tilematrixsetlinks
    meta = httpx.get(f"{api_server}/mosaics/scenes", timeout=60).json()
    tms = morecantile.tms.get(tms_id)
    z, x, y = tile_of(*OVERLAP, meta["maxzoom"], tms)
    assert str(z) in service.tilematrixsets[tms_id].tilematrix
    answer = service.gettile(
        layer=layer,
        tilematrixset=tms_id,
        tilematrix=str(z),
        row=y,
        column=x,
        format="image/png",
    )
    via_owslib = answer.read()
    route = httpx.get(f"{api_server}/mosaics/scenes/tiles/{tms_id}/{z}/{x}/{y}.png", timeout=60)
    assert route.status_code == 200, route.text
    with MemoryFile(via_owslib) as memfile, memfile.open() as dataset:
        assert dataset.driver == "PNG"
        pixels = dataset.read()
    with MemoryFile(route.content) as memfile, memfile.open() as dataset:
        expected = dataset.read()
    assert pixels.shape == expected.shape and pixels.shape[0] == 4  # RGB + alpha
    assert (pixels[-1] > 0).mean() > 0.5  # mostly inside the mosaic: a real comparison
    assert np.array_equal(pixels, expected)


def test_map_page_uses_vendored_library(client):
    html = client.get("/mosaics/scenes/map").text
    assert "/static/leaflet/leaflet.js" in html and "unpkg" not in html and "cdn" not in html
    assert "/mosaics/scenes/tilejson.json" in html
    script = client.get("/static/leaflet/leaflet.js")
    assert script.status_code == 200 and "Leaflet" in script.text[:500]


# ---------------------------------------------------------------------------- tiles
@pytest.mark.parametrize(
    ("suffix", "media_type", "driver"),
    [
        (".png", "image/png", "PNG"),
        (".jpeg", "image/jpeg", "JPEG"),
        (".jpg", "image/jpeg", "JPEG"),
        (".webp", "image/webp", "WEBP"),
        (".tif", "image/tiff; application=geotiff", "GTiff"),
    ],
)
def test_image_formats(client, suffix, media_type, driver):
    z, x, y = tile_of(*OVERLAP, 9)
    response = client.get(f"/mosaics/scenes/tiles/WebMercatorQuad/{z}/{x}/{y}{suffix}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    with MemoryFile(response.content) as memfile, memfile.open() as dataset:
        assert dataset.driver == driver
        assert (dataset.width, dataset.height) == (256, 256)
        if driver == "GTiff":  # georeferenced in the TMS's CRS
            assert dataset.crs == WEB_MERCATOR.rasterio_crs
            expected = WEB_MERCATOR.xy_bounds(morecantile.Tile(x, y, z))
            assert tuple(dataset.bounds) == pytest.approx(tuple(expected), abs=1e-3)
            band1 = dataset.read(1)
            assert set(scene_index(band1[band1 > 0]).tolist()) <= {0, 1, 2, 3}


def test_default_format_png_with_mask_and_npy(client):
    z, x, y = tile_of(*SCENE_A_ONLY, 9)
    response = client.get(f"/mosaics/scene-a/tiles/WebMercatorQuad/{z}/{x}/{y}")
    # the tile reaches past the scene's edge: it has holes, so the default format keeps the mask
    assert response.headers["content-type"] == "image/png"
    array = npy(client.get(f"/mosaics/scene-a/tiles/WebMercatorQuad/{z}/{x}/{y}.npy"))
    assert array.shape == (3, 256, 256) and array.mask.any() and (~array.mask).any()
    for band in (1, 2, 3):
        values = array[band - 1].compressed()
        assert values.min() >= scene_value(0, band) and values.max() <= scene_value(0, band) + 7
    unmasked = np.load(
        io.BytesIO(
            client.get(
                f"/mosaics/scene-a/tiles/WebMercatorQuad/{z}/{x}/{y}.npy?return_mask=false"
            ).content
        )
    )
    assert unmasked.shape == (3, 256, 256)


def test_scale_tilesize_buffer_padding(client):
    z, x, y = tile_of(*OVERLAP, 9)
    base = f"/mosaics/scenes/tiles/WebMercatorQuad/{z}/{x}/{y}"
    assert npy(client.get(f"{base}@2x.npy")).shape == (3, 512, 512)
    with MemoryFile(client.get(f"{base}@2x").content) as memfile, memfile.open() as dataset:
        assert (dataset.width, dataset.height) == (512, 512)
    assert npy(client.get(f"{base}.npy?tilesize=128")).shape == (3, 128, 128)
    assert npy(client.get(f"{base}.npy?buffer=2")).shape == (3, 260, 260)
    padded = npy(client.get(f"{base}.npy?padding=2&resampling=bilinear"))
    assert padded.shape == (3, 256, 256)


def test_bidx_expression_rescale_colormap_nodata(client):
    z, x, y = tile_of(*SCENE_A_ONLY, 9)
    base = f"/mosaics/scene-a/tiles/WebMercatorQuad/{z}/{x}/{y}"
    full = npy(client.get(f"{base}.npy"))
    band2 = npy(client.get(f"{base}.npy?bidx=2"))
    assert band2.shape == (1, 256, 256)
    both = ~full.mask[1] & ~band2.mask[0]
    assert both.sum() > 1000
    # GDAL warps 1 and 3 bands in different chunks: a few gradient-edge pixels may differ by 1
    same = band2[0].data[both] == full[1].data[both]
    assert same.mean() > 0.98
    assert np.abs(band2[0].data[both].astype(int) - full[1].data[both]).max() <= 1
    ratio = npy(client.get(f"{base}.npy", params={"expression": "b3-b1"}))
    assert ratio.shape == (1, 256, 256)
    # band 3 = band 1 + 2 in every scene
    assert (ratio[0].data[~full.mask[0]] == 2).mean() > 0.98
    rescaled = npy(client.get(f"{base}.npy", params={"rescale": "41,48"}))
    assert rescaled.dtype == np.uint8 and rescaled[0].compressed().max() == 255
    assert rescaled[0].compressed().min() == 0
    colored = client.get(f"{base}.png", params={"bidx": 1, "colormap_name": "viridis"})
    with MemoryFile(colored.content) as memfile, memfile.open() as dataset:
        assert dataset.count == 4  # RGBA from the colormap
    custom = client.get(
        f"{base}.npy",
        params={"bidx": 1, "colormap": '{"45": [255, 0, 0, 255]}', "return_mask": "false"},
    )
    assert custom.status_code == 200
    # nodata override: the smallest value of band 1 becomes nodata (and 0 becomes data)
    low = int(full[0].compressed().min())
    masked = npy(client.get(f"{base}.npy", params={"nodata": low, "bidx": 1}))
    assert low not in set(masked[0].compressed().tolist())
    assert (masked[0].compressed() > low).sum() > 1000


@pytest.mark.parametrize(
    "tms_id", ["WebMercatorQuad", "WorldCRS84Quad", "WGS1984Quad", "CanadianNAD83_LCC"]
)
def test_tile_matrix_sets(client, tms_id):
    tms = morecantile.tms.get(tms_id)
    tj = client.get(f"/mosaics/scenes/{tms_id}/tilejson.json").json()
    assert f"/tiles/{tms_id}/" in tj["tiles"][0]
    z, x, y = tile_of(*OVERLAP, tj["maxzoom"], tms)
    response = client.get(f"/mosaics/scenes/tiles/{tms_id}/{z}/{x}/{y}.npy")
    array = npy(response)
    assert (~array.mask).any()
    assert set(scene_index(array[0].compressed()).tolist()) <= {0, 1, 2, 3}
    assert client.get(f"/mosaics/scenes/tiles/{tms_id}/{z}/{x}/{y}/assets").json()


def test_pixel_selection_on_generated_scenes(client):
    z, x, y = tile_of(*OVERLAP, 9)
    base = f"/mosaics/scenes/tiles/WebMercatorQuad/{z}/{x}/{y}.npy"
    results = {m: npy(client.get(base, params={"pixel_selection": m})) for m in METHODS}
    count = results["count"][0]
    several = (count.filled(0) >= 2) & ~results["first"][0].mask
    assert several.sum() > 1000  # the tile holds a real overlap
    first, highest, lowest = (scene_index(results[m][0].filled(0)) for m in METHODS[:3])
    # scenes are in index order and a later scene has larger values
    assert (first[several] == lowest[several]).all()
    assert (highest[several] > lowest[several]).all()
    for name in ("mean", "median"):
        value = results[name][0].filled(0)[several]
        assert (value >= results["lowest"][0].filled(0)[several]).all()
        assert (value <= results["highest"][0].filled(0)[several]).all()
    assert (results["stdev"][0].filled(0)[several] > 0).all()
    # all three bands move together, so the last-band rules pick the extremes
    assert (
        results["lastbandhigh"][0].filled(0)[several] == results["highest"][0].filled(0)[several]
    ).all()
    assert (
        results["lastbandlow"][0].filled(0)[several] == results["lowest"][0].filled(0)[several]
    ).all()


def test_pixel_selection_on_known_values(client, shared_fixtures):
    # mosaic_value_1.tif holds 1 wherever it has data, mosaic_value_2.tif holds 2 (nodata 0).
    meta = client.get("/mosaics/values").json()
    west, south, east, north = meta["bounds"]
    z, x, y = tile_of((west + east) / 2, (south + north) / 2, 7)
    path = f"tiles/WebMercatorQuad/{z}/{x}/{y}.npy"
    # Band 1 alone: the dataset mask is per band, so one band keeps the comparison exact.
    one = npy(client.get(f"/mosaics/value1/{path}?bidx=1"))[0].filled(0)
    two = npy(client.get(f"/mosaics/value2/{path}?bidx=1"))[0].filled(0)
    assert set(np.unique(one).tolist()) == {0, 1}
    assert set(np.unique(two).tolist()) == {0, 2}
    has1, has2 = one > 0, two > 0
    both = has1 & has2
    assert both.sum() > 1000 and (has1 & ~has2).sum() > 1000 and (has2 & ~has1).sum() > 1000
    expected = {
        "first": np.where(has1, 1, 2),
        "highest": np.where(has2, 2, 1),
        "lowest": np.where(has1, 1, 2),
        "mean": np.where(has1, 1, 2),  # (1 + 2) / 2 kept in uint16 is 1
        "median": np.where(has1, 1, 2),
        "stdev": np.where(both, 0.5, 0.0),
        "lastbandlow": np.where(has1, 1, 2),
        "lastbandhigh": np.where(has2, 2, 1),
        "count": has1.astype(int) + has2.astype(int),
    }
    # Pixels next to a footprint edge are left out: there GDAL's per-band masks of a warped
    # read may disagree by a pixel, which is not what this test is about.
    edge = np.zeros_like(has1)
    for mask in (has1, has2):
        for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
            edge |= mask != np.roll(mask, shift, axis=axis)
    valid = (has1 | has2) & ~edge
    for method, wanted in expected.items():
        got = npy(client.get(f"/mosaics/values/{path}?bidx=1", params={"pixel_selection": method}))
        data = got.data[0]
        np.testing.assert_allclose(data[valid], wanted[valid], err_msg=method)
        if method != "count":  # count is 0 where nothing is valid; others are nodata there
            assert ((data == 0) | got.mask[0])[~(has1 | has2) & ~edge].all(), method


# ---------------------------------------------------------------------------- points, assets
def test_point_values(client, api_store):
    lon, lat = SCENE_A_ONLY
    body = client.get(f"/mosaics/scenes/point/{lon},{lat}").json()
    assert body["coordinates"] == [lon, lat]
    assert [a["name"] for a in body["assets"]] == [api_store.scene_paths[0]]
    for band, value in enumerate(body["assets"][0]["values"], start=1):
        assert scene_value(0, band) <= value <= scene_value(0, band) + 7
    overlap = client.get(f"/mosaics/scenes/point/{OVERLAP[0]},{OVERLAP[1]}").json()
    assert len(overlap["assets"]) >= 2
    in_mercator = client.get(
        "/mosaics/scenes/point/-8733000,5652000", params={"coord_crs": "EPSG:3857"}
    )
    assert in_mercator.status_code == 200 and in_mercator.json()["assets"]


def test_assets_endpoints(client, api_store):
    a, b, c, d = api_store.scene_paths
    lon, lat = SCENE_A_ONLY
    assert a in client.get(f"/mosaics/scenes/point/{lon},{lat}/assets").json()
    z, x, y = tile_of(*OVERLAP, 9)
    assert {a, b, c} <= set(
        client.get(f"/mosaics/scenes/tiles/WebMercatorQuad/{z}/{x}/{y}/assets").json()
    )
    everything = client.get("/mosaics/scenes/bbox/-79,44.5,-77,46/assets").json()
    assert sorted(everything) == sorted([a, b, c, d])
    assert client.get("/mosaics/scenes/bbox/10,10,11,11/assets").json() == []


def test_url_form(client, api_store):
    file_uri = f"file://{api_store.directory}/scenes.json"
    assert client.get("/mosaic/info", params={"url": file_uri}).json()["name"] == "scenes"
    z, x, y = tile_of(*OVERLAP, 9)
    tile = client.get(f"/mosaic/tiles/WebMercatorQuad/{z}/{x}/{y}.npy", params={"url": file_uri})
    by_id = client.get(f"/mosaics/scenes/tiles/WebMercatorQuad/{z}/{x}/{y}.npy")
    np.testing.assert_array_equal(npy(tile).filled(0), npy(by_id).filled(0))
    tj = client.get("/mosaic/tilejson.json", params={"url": file_uri}).json()
    assert "url=file" in tj["tiles"][0]
    outside = client.get("/mosaic/info", params={"url": "file:///etc/passwd"})
    assert outside.status_code == 403
    sneaky = client.get("/mosaic/info", params={"url": file_uri.replace("scenes.json", "../x")})
    assert sneaky.status_code == 422


def test_gdal_sees_the_georeferenced_tile(client):
    z, x, y = tile_of(*OVERLAP, 8, morecantile.tms.get("WorldCRS84Quad"))
    content = client.get(f"/mosaics/scenes/tiles/WorldCRS84Quad/{z}/{x}/{y}.tif").content
    with MemoryFile(content) as memfile, memfile.open() as dataset:
        # GeoTIFF keys record CRS84 as EPSG:4326 (GeoTIFF is always x/y ordered)
        assert dataset.crs.to_epsg() == 4326
        expected = morecantile.tms.get("WorldCRS84Quad").bounds(morecantile.Tile(x, y, z))
        assert tuple(dataset.bounds) == pytest.approx(tuple(expected), abs=1e-6)


def test_invalid_parameters_are_refused_before_the_mosaic_is_opened(api_store, monkeypatch):
    """A request about to be refused with a 422 reads nothing from the store: the mosaic is
    opened by the route's first use of it, after FastAPI and the parameter classes have
    validated every parameter (an unknown mosaic with a bad parameter is a 422 too)."""
    from fastapi.testclient import TestClient

    from lambda_handler.app import create_app
    from lambda_handler.routes import opened_mosaic

    opened: list[str] = []
    real_open = opened_mosaic.open_backend

    def counting_open(uri, tms=None):
        opened.append(uri)
        return real_open(uri, tms)

    monkeypatch.setattr(opened_mosaic, "open_backend", counting_open)
    z, x, y = tile_of(-78.15, 45.40, 9)
    with TestClient(create_app(api_store.settings)) as client:
        for mosaic, query in (
            ("scenes", "rescale=abc"),  # a parameter class refuses it
            ("scenes", "tilesize=0"),  # FastAPI's own validation
            ("scenes", "colormap=%7Bbad"),
            ("no-such-mosaic", "rescale=abc"),
        ):
            tile = f"/mosaics/{mosaic}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{query}"
            response = client.get(tile)
            assert response.status_code == 422, (query, response.text)
        response = client.get("/mosaics/scenes/point/-78.15,95.0")
        assert response.status_code == 422, response.text
        assert opened == []
        assert (
            client.get(f"/mosaics/scenes/tiles/WebMercatorQuad/{z}/{x}/{y}.png").status_code == 200
        )
        assert opened == [api_store.uri("scenes")]
