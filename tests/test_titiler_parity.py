"""titiler.mosaic's answers for the same requests (issue 15), through the app in process and
over uvicorn. Differences kept on purpose are listed in the README ("Coming from cogeo-mosaic /
titiler"): invalid parameters are 422 naming the parameter (titiler: 400 for a colormap on 3
bands or a bad expression)."""

import io

import morecantile
import numpy as np
import pytest
from rasterio.io import MemoryFile

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
OVERLAP = (-78.15, 45.40)  # scenes a, b and c


def tile_path(mosaic: str, lon: float, lat: float, z: int, suffix: str = "") -> str:
    tile = WEB_MERCATOR.tile(lon, lat, z)
    return f"/mosaics/{mosaic}/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}{suffix}"


def npy_values(response) -> np.ma.MaskedArray:
    assert response.status_code == 200, response.text
    array = np.load(io.BytesIO(response.content))
    data, mask = array[:-1], array[-1]
    return np.ma.MaskedArray(data, mask=np.repeat((mask == 0)[None], len(data), axis=0))


def decoded(response) -> tuple[str, np.ndarray]:
    with MemoryFile(response.content) as memfile, memfile.open() as src:
        return src.driver, src.read()


def test_no_extension_on_16_bit_data_is_an_8_bit_image_like_titiler(client):
    """titiler's automatic format (PNG if any pixel is masked, else JPEG) is always 8-bit:
    values scaled from the data type's range (0-65535 -> 0-255)."""
    path = tile_path("scenes16", *OVERLAP, 10)
    auto = client.get(path)
    assert auto.status_code == 200, auto.text
    assert auto.headers["content-type"] in ("image/png", "image/jpeg")
    driver, pixels = decoded(auto)
    assert pixels.dtype == np.uint8
    raw = npy_values(client.get(path + ".npy"))
    assert raw.dtype == np.uint16 and raw.max() > 255  # the case is a real 16-bit one
    valid = ~np.ma.getmaskarray(raw)
    expected = raw.data.astype(float) * 255 / 65535
    if driver == "PNG":
        assert np.all(np.abs(pixels[:3][valid] - expected[valid]) <= 1)
    # An explicit .png keeps the 16 bits, as titiler's png.
    driver, explicit = decoded(client.get(path + ".png"))
    assert driver == "PNG" and explicit.dtype == np.uint16


def test_zoom_outside_the_mosaic_zooms_renders(client):
    """Maps over-zoom: titiler renders there (the same pixels, read at a higher zoom)."""
    maxzoom = client.get("/mosaics/scenes").json()["maxzoom"]
    deep = client.get(tile_path("scenes", *OVERLAP, maxzoom + 2, ".npy"))
    values = npy_values(deep)
    assert values.count() > 0
    # Band values encode the scene (see lambda_handler.sample_data): scenes a, b, c here.
    scenes = set(((values[0].compressed().astype(int) - 1) // 40 - 1).tolist())
    assert scenes and scenes <= {0, 1, 2}
    assert client.get(tile_path("scenes", *OVERLAP, maxzoom + 2, ".png")).status_code == 200


def test_outside_the_bounds_is_204_outside_the_grid_is_404(client):
    outside = client.get(tile_path("scenes", 10.0, 10.0, 9))
    assert outside.status_code == 204 and "bounds" in outside.headers["x-reason"]
    assert client.get("/mosaics/scenes/tiles/WebMercatorQuad/9/99999/1").status_code == 404
    assert client.get("/mosaics/scenes/tiles/WebMercatorQuad/40/1/1").status_code in (404, 422)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"bidx": "5"}, "bidx"), ({"expression": "b5"}, "expression")],
)
def test_missing_band_is_422_naming_it(client, params, field):
    response = client.get(tile_path("scenes", *OVERLAP, 10, ".png"), params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    text = str(body)
    assert field in text and "5" in text


# ---------------------------------------------------------------------------- WMTS
WMTS_NS = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}


def test_wmts_declares_gettile_provider_and_limits(client):
    import xml.etree.ElementTree as ET

    response = client.get("/mosaics/scenes/WMTSCapabilities.xml", params={"tile_format": "png"})
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    operations = {op.get("name") for op in root.iterfind(".//ows:Operation", WMTS_NS)}
    assert {"GetCapabilities", "GetTile"} <= operations
    assert root.find("ows:ServiceProvider/ows:ProviderName", WMTS_NS).text
    from lambda_handler.routes.dependencies import tms_ids

    links = root.findall("w:Contents/w:Layer/w:TileMatrixSetLink", WMTS_NS)
    offered = [link.find("w:TileMatrixSet", WMTS_NS).text for link in links]
    assert offered[0] == "WebMercatorQuad" and sorted(offered) == sorted(tms_ids())
    defined = root.findall("w:Contents/w:TileMatrixSet/ows:Identifier", WMTS_NS)
    assert sorted(e.text for e in defined) == sorted(tms_ids())
    limits = links[0].findall("w:TileMatrixSetLimits/w:TileMatrixLimits", WMTS_NS)
    meta = client.get("/mosaics/scenes").json()
    assert len(limits) == meta["maxzoom"] - meta["minzoom"] + 1
    # The tile of a point inside the mosaic lies within the limits of its zoom; the limits
    # are narrower than the whole matrix.
    for limit in limits:
        z = int(limit.find("w:TileMatrix", WMTS_NS).text)
        tile = WEB_MERCATOR.tile(*OVERLAP, z)
        rows = (
            int(limit.find("w:MinTileRow", WMTS_NS).text),
            int(limit.find("w:MaxTileRow", WMTS_NS).text),
        )
        cols = (
            int(limit.find("w:MinTileCol", WMTS_NS).text),
            int(limit.find("w:MaxTileCol", WMTS_NS).text),
        )
        assert rows[0] <= tile.y <= rows[1] and cols[0] <= tile.x <= cols[1]
        assert (rows[1] - rows[0] + 1) * (cols[1] - cols[0] + 1) < 4**z or z == 0


def test_gdal_wmts_driver_reads_the_mosaic(api_server):
    """GDAL's WMTS driver (a real client, through rasterio) opens the capabilities over HTTP,
    follows the RESTful ResourceURL and reads the same pixels the tile endpoint serves."""
    import httpx
    import rasterio
    from rasterio.windows import from_bounds

    url = f"WMTS:{api_server}/mosaics/scenes/WMTSCapabilities.xml?tile_format=png"
    meta = httpx.get(f"{api_server}/mosaics/scenes").json()
    z = meta["maxzoom"]
    tile = WEB_MERCATOR.tile(*OVERLAP, z)
    left, bottom, right, top = WEB_MERCATOR.xy_bounds(tile)
    with rasterio.Env(GDAL_HTTP_TIMEOUT="30"), rasterio.open(url) as src:
        assert src.crs.to_epsg() == 3857
        window = (
            from_bounds(left, bottom, right, top, src.transform).round_offsets().round_lengths()
        )
        # The layer's extent ends at the mosaic bounds: read past it, then compare inside.
        data = src.read([1, 2, 3], window=window, boundless=True, fill_value=0)
        inside = src.read(4, window=window, boundless=True, fill_value=0) > 0
    served = npy_values(httpx.get(f"{api_server}{tile_path('scenes', *OVERLAP, z, '.npy')}"))
    assert data.shape[1:] == served.shape[1:]
    valid = ~np.ma.getmaskarray(served[0]) & inside
    assert valid.sum() > 0.5 * valid.size
    assert np.array_equal(data[:, valid], served.data[:, valid])


# ---------------------------------------------------------------------------- notebook 004
def test_color_formula_is_applied_like_rio_tiler(client):
    """titiler's `color_formula`: applied after rescale, the same as rio-tiler's
    apply_color_formula on the tile's data (what the export's local mode does)."""
    from rio_tiler.models import ImageData

    formula = "gamma RGB 3.5, saturation 1.7, sigmoidal RGB 15 0.35"
    path = tile_path("scenes", *OVERLAP, 10)
    raw = npy_values(client.get(path + ".npy"))
    image = ImageData(raw.copy())
    image.apply_color_formula(formula)
    formulated = npy_values(client.get(path + ".npy", params={"color_formula": formula}))
    valid = ~np.ma.getmaskarray(raw)
    assert np.array_equal(formulated.data[valid], image.array.data[valid])
    assert not np.array_equal(formulated.data[valid], raw.data[valid])


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"bands": "4,3,2"}, "bands"),
        ({"color_ops": "gamma RGB 3.5"}, "color_ops"),
        ({"expr": "b4,b3,b2"}, "expr"),
        ({"pixel_selection": "lastband"}, "pixel_selection"),
        ({"color_formula": "nonsense 5"}, "color_formula"),
    ],
)
def test_notebook_004_parameters_are_refused_naming_them(client, params, named):
    """Each parameter of cogeo-mosaic's distributed-processing notebook is either supported
    (`pixel_selection=median`, `color_formula`) or a 422 naming it, never ignored."""
    response = client.get(tile_path("scenes", *OVERLAP, 10, ".png"), params=params)
    assert response.status_code == 422, response.text
    assert named in str(response.json())
    median = client.get(
        tile_path("scenes", *OVERLAP, 10, ".png"), params={"pixel_selection": "median"}
    )
    assert median.status_code == 200
    # Unknown parameters stay ignored, as in titiler (map clients add cache-busting ones).
    assert (
        client.get(tile_path("scenes", *OVERLAP, 10, ".png"), params={"_": "1"}).status_code == 200
    )


def test_export_color_formula_same_in_endpoint_and_local_modes(api_server, api_store, tmp_path):
    """`mosaic-tiler export --color-formula`: the endpoint mode sends `color_formula` to the
    tile route, which applies it as the local mode does: the same GeoTIFF pixels."""
    import rasterio

    from lambda_handler.export import ExportRun, ExportTiles, TileOptions, export_mosaic

    options = TileOptions(color_formula="gamma RGB 3.5, saturation 1.7, sigmoidal RGB 15 0.35")
    area, zoom = (-78.3, 45.3, -78.0, 45.5), 9
    remote = export_mosaic(
        tmp_path / "remote.tif", zoom, bbox=area, endpoint=api_server, mosaic_id="scenes",
        tiles=ExportTiles(options), run=ExportRun(concurrency=2),
    )  # fmt: skip
    local = export_mosaic(
        tmp_path / "local.tif", zoom, bbox=area, uri=api_store.uri("scenes"),
        tiles=ExportTiles(options), run=ExportRun(concurrency=2),
    )  # fmt: skip
    plain = export_mosaic(
        tmp_path / "plain.tif", zoom, bbox=area, uri=api_store.uri("scenes"),
        run=ExportRun(concurrency=2),
    )  # fmt: skip
    assert remote.assembled and local.assembled and plain.assembled
    arrays = {}
    for name in ("remote", "local", "plain"):
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            arrays[name] = (src.read(), src.dataset_mask())
    (remote_data, remote_mask), (local_data, local_mask) = arrays["remote"], arrays["local"]
    assert remote_mask.any() and np.array_equal(remote_mask, local_mask)
    valid = remote_mask > 0
    assert np.array_equal(remote_data[:, valid], local_data[:, valid])
    assert not np.array_equal(remote_data[:, valid], arrays["plain"][0][:, valid])


def test_info_geojson_is_the_info_as_a_feature(client):
    info = client.get("/mosaics/scenes/info").json()
    feature = client.get("/mosaics/scenes/info.geojson").json()
    assert feature["type"] == "Feature" and feature["properties"] == info
    west, south, east, north = info["bounds"]
    assert feature["bbox"] == [west, south, east, north]
    assert feature["geometry"]["coordinates"][0][2] == [east, north]
    assert client.get("/mosaics/nope/info.geojson").status_code == 404


def test_ogc_tilesets_and_tilesize(client):
    """titiler's `/tiles` (one tileset per supported TMS), `/tiles/{tileMatrixSetId}` (with
    TileMatrixSetLimits holding the mosaic's tiles) and `tilesize=` beside `@2x`."""
    from lambda_handler.routes.dependencies import tms_ids

    listing = client.get("/mosaics/scenes/tiles")
    assert listing.status_code == 200, listing.text
    tilesets = listing.json()["tilesets"]
    assert len(tilesets) == len(tms_ids())
    assert all(t["dataType"] == "map" and t["links"] for t in tilesets)
    one = client.get("/mosaics/scenes/tiles/WebMercatorQuad").json()
    assert one["crs"].endswith("3857")
    meta = client.get("/mosaics/scenes").json()
    limits = {limit["tileMatrix"]: limit for limit in one["tileMatrixSetLimits"]}
    assert sorted(int(z) for z in limits) == list(range(meta["minzoom"], meta["maxzoom"] + 1))
    for z, limit in limits.items():
        tile = WEB_MERCATOR.tile(*OVERLAP, int(z))
        assert limit["minTileCol"] <= tile.x <= limit["maxTileCol"]
        assert limit["minTileRow"] <= tile.y <= limit["maxTileRow"]
    template = next(link["href"] for link in one["links"] if link["rel"] == "item")
    tile = WEB_MERCATOR.tile(*OVERLAP, meta["maxzoom"])
    href = template.format(z=tile.z, x=tile.x, y=tile.y)
    href = href[href.index("/mosaics/") :]
    assert client.get(href).status_code == 200
    assert client.get("/mosaics/scenes/tiles/NoSuchTMS").status_code in (404, 422)

    path = tile_path("scenes", *OVERLAP, meta["maxzoom"])
    big = npy_values(client.get(path + ".npy", params={"tilesize": 512}))
    at2x = npy_values(client.get(path + "@2x.npy"))
    assert big.shape[1:] == (512, 512)
    assert np.array_equal(big.data, at2x.data) and np.array_equal(big.mask, at2x.mask)
