"""The vectorized builder against a one-tile-at-a-time reference written with morecantile."""

import json
import random

import morecantile
import pytest
import shapely
from shapely.geometry import box, shape

from lambda_handler.errors import FootprintReadError, InvalidMosaicError, MultipleDataTypeError
from lambda_handler.mosaic import from_features, from_urls, get_footprints
from tests.geometry import square

TMS = morecantile.tms.get("WebMercatorQuad")


def reference_index(features, zoom, tms=TMS):
    """Slow, obvious version: every tile of the footprint bbox, tested one by one."""
    index = {}
    geoms = [shape(f["geometry"]) for f in features]
    projected = [shapely.transform(g, lambda xy: [tms.xy(x, y) for x, y in xy]) for g in geoms]
    union_bounds = shapely.total_bounds(geoms)
    west, south, east, north = union_bounds
    burnt = set()
    for tile in tms.tiles(west, south, east, north, [zoom]):
        xy_box = box(*tms.xy_bounds(tile))
        if any(p.intersects(xy_box) for p in projected):
            burnt.add((tile.x, tile.y))
    for x, y in sorted(burnt):
        tile_box = box(*tms.bounds(x, y, zoom))
        assets = [
            f["properties"]["path"]
            for f, g in zip(features, geoms, strict=False)
            if g.intersects(tile_box)
        ]
        if assets:
            index[tms.quadkey(x, y, zoom)] = assets
    return index


@pytest.fixture(scope="module")
def random_features():
    rng = random.Random(7)
    return [
        square(
            rng.uniform(-10, 10),
            rng.uniform(40, 50),
            rng.uniform(0.5, 2.5),
            f"s{i}.tif",
            rng.uniform(-0.4, 0.4),
        )
        for i in range(60)
    ]


def test_index_matches_reference(random_features):
    mosaic = from_features(random_features, 6, 10, quadkey_zoom=7)
    assert mosaic.tiles == reference_index(random_features, 7)
    assert mosaic.quadkey_zoom == 7
    assert mosaic.mosaicjson == "0.0.3"


def test_multipolygon_footprints_cover_both_parts():
    feature = {
        "type": "Feature",
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [
                [[[0.1, 0.1], [0.4, 0.1], [0.4, 0.4], [0.1, 0.4], [0.1, 0.1]]],
                [[[10.1, 10.1], [10.4, 10.1], [10.4, 10.4], [10.1, 10.4], [10.1, 10.1]]],
            ],
        },
        "properties": {"path": "multi.tif"},
    }
    mosaic = from_features([feature], 5, 8)
    expected = {TMS.quadkey(TMS.tile(0.25, 0.25, 5)), TMS.quadkey(TMS.tile(10.25, 10.25, 5))}
    assert set(mosaic.tiles) == expected
    assert mosaic.bounds == pytest.approx((0.1, 0.1, 10.4, 10.4))


@pytest.mark.parametrize("wrapped", [True, False])
def test_antimeridian_footprints_are_split(wrapped):
    east = -179.0 if wrapped else 181.0
    feature = {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[179.0, 50.0], [east, 50.0], [east, 51.0], [179.0, 51.0], [179.0, 50.0]]
            ],
        },
        "properties": {"path": "dateline.tif"},
    }
    mosaic = from_features([feature], 4, 6)
    tiles = {TMS.quadkey_to_tile(qk) for qk in mosaic.tiles}
    xs = {t.x for t in tiles}
    assert xs == {0, 15}, "one tile each side of the antimeridian, none in between"
    assert mosaic.bounds[0] == pytest.approx(-180.0) and mosaic.bounds[2] == pytest.approx(180.0)


def test_minimum_tile_cover_and_sort_and_max_items():
    # One big footprint covering a whole z4 tile, one small one inside it.
    tile = morecantile.Tile(8, 5, 4)
    w, s, e, n = TMS.bounds(tile)
    big = square((w + e) / 2, (s + n) / 2, 40, "big.tif")
    small = square((w + e) / 2, (s + n) / 2, 1, "small.tif")
    key = TMS.quadkey(tile)

    plain = from_features([small, big], 4, 6)
    assert plain.tiles[key] == ["small.tif", "big.tif"]

    covered = from_features([small, big], 4, 6, minimum_tile_cover=0.5)
    assert covered.tiles[key] == ["big.tif"]

    ordered = from_features([small, big], 4, 6, tile_cover_sort=True)
    assert ordered.tiles[key] == ["big.tif", "small.tif"]

    limited = from_features([small, big], 4, 6, tile_cover_sort=True, maximum_items_per_tile=1)
    assert limited.tiles[key] == ["big.tif"]

    with pytest.raises(InvalidMosaicError, match="minimum_tile_cover"):
        from_features([small], 4, 6, minimum_tile_cover=2)


def test_accessor_and_asset_prefix():
    features = [square(1, 1, 0.5, "s3://bucket/a.tif"), square(1.1, 1.1, 0.5, "s3://bucket/b.tif")]
    for f, name in zip(features, ("A", "B"), strict=False):
        f["properties"]["id"] = name
    mosaic = from_features(features, 5, 7, accessor=lambda f: f["properties"]["id"])
    assert sorted({a for assets in mosaic.tiles.values() for a in assets}) == ["A", "B"]

    prefixed = from_features(features, 5, 7, asset_prefix="s3://bucket/")
    assert prefixed.asset_prefix == "s3://bucket/"
    assert sorted({a for assets in prefixed.tiles.values() for a in assets}) == ["a.tif", "b.tif"]


def test_non_webmercator_quadtree_tms():
    tms = morecantile.tms.get("WorldMercatorWGS84Quad")
    features = [square(5, 45, 2, "a.tif"), square(6, 45.5, 2, "b.tif")]
    mosaic = from_features(features, 5, 7, tilematrixset=tms)
    assert mosaic.tms.id == "WorldMercatorWGS84Quad"
    assert mosaic.tiles == reference_index(features, 5, tms)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([], "no features"),
        (
            [{"type": "Feature", "id": "x1", "properties": {"path": "a"}}],
            "feature 'x1' has no geometry",
        ),
        (
            [
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [0, 0]},
                    "properties": {},
                }
            ],
            "Point geometry",
        ),
    ],
)
def test_bad_features_are_named(features, message):
    with pytest.raises(InvalidMosaicError, match=message):
        from_features(features, 4, 6)


def test_missing_path_property_is_named():
    feature = square(1, 1, 1, "a.tif")
    feature["id"] = "no-path"
    del feature["properties"]["path"]
    with pytest.raises(InvalidMosaicError, match="'no-path' has no 'properties.path'"):
        from_features([feature], 4, 6)


def test_from_urls_reads_real_cogs(sample_cogs):
    mosaic = from_urls(sample_cogs)
    assert mosaic.data_type == "uint8"
    assert mosaic.minzoom <= mosaic.maxzoom
    listed = {a for assets in mosaic.tiles.values() for a in assets}
    assert listed == set(sample_cogs)
    footprints = get_footprints(sample_cogs)
    assert [f["properties"]["path"] for f in footprints] == sample_cogs
    assert all(f["properties"]["datatype"] == "uint8" for f in footprints)


def test_from_urls_names_unreadable_files(sample_cogs, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    missing = str(tmp_path / "missing.tif")
    with pytest.raises(FootprintReadError) as info:
        from_urls([*sample_cogs, str(broken), missing])
    assert str(broken) in str(info.value) and missing in str(info.value)
    assert set(info.value.failures) == {str(broken), missing}

    with pytest.warns(UserWarning, match="broken.tif"):
        mosaic = from_urls([*sample_cogs, str(broken)], skip_errors=True)
    assert str(broken) not in json.dumps(mosaic.tiles)


def test_from_urls_refuses_mixed_data_types(sample_cogs, sample_cogs_uint16):
    with pytest.raises(MultipleDataTypeError, match="uint16, uint8"):
        from_urls([sample_cogs[0], sample_cogs_uint16[1]])


# ---------------------------------------------------------------------------- any quadtree TMS
def reference_cogeo_rule(features, zoom, tms):
    """cogeo-mosaic's rule (supermorecado's burn), one tile at a time with morecantile: the
    tiles between the corners of the footprints' extrema (clamped to the TMS bounds) that a
    footprint projected with clamped coordinates touches, each listing the footprints meeting
    its densified geographic bounds (morecantile's tile feature)."""
    geoms = [shape(f["geometry"]) for f in features]
    bbox = tms.bbox
    west, south, east, north = shapely.total_bounds(geoms)
    west, south = max(west + 1e-10, bbox.left), max(south + 1e-10, bbox.bottom)
    east, north = min(east - 1e-10, bbox.right), min(north - 1e-10, bbox.top)
    ul, lr = tms.tile(west, north, zoom), tms.tile(east, south, zoom)

    def clamp_project(xy):
        return [tms.xy(x, y, truncate=True) for x, y in xy]

    projected = [shapely.transform(g, clamp_project) for g in geoms]
    index = {}
    for x in range(min(ul.x, lr.x), max(ul.x, lr.x) + 1):
        for y in range(min(ul.y, lr.y), max(ul.y, lr.y) + 1):
            xy_box = box(*tms.xy_bounds(x, y, zoom))
            if not any(p.intersects(xy_box) for p in projected):
                continue
            tile_geom = shape(tms.feature(morecantile.Tile(x, y, zoom))["geometry"])
            assets = [
                f["properties"]["path"]
                for f, g in zip(features, geoms, strict=True)
                if g.intersects(tile_geom)
            ]
            if assets:
                index[tms.quadkey(x, y, zoom)] = assets
    return index


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("zoom", [2, 3, 4])
def test_polar_tms_index_follows_cogeo_mosaic_rule(zoom):
    """Polar stereographic: a footprint's tiles are not its bbox corners' tiles."""
    tms = morecantile.tms.get("UPSArcticWGS84Quad")
    features = [
        square(15, 72.5, 5, "a.tif"),
        square(22, 76, 8, "b.tif"),
        square(-90, 65, 10, "c.tif"),
    ]
    mosaic = from_features(features, zoom, zoom, tilematrixset=tms)
    expected = reference_cogeo_rule(features, zoom, tms)
    assert expected, "the reference found no tile: the case tests nothing"
    assert mosaic.tiles == expected


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_data_outside_a_regional_tms_gives_an_empty_mosaic():
    tms = morecantile.tms.get("EuropeanETRS89_LAEAQuad")
    outside = [square(-95, 35, 6, "america.tif")]
    mosaic = from_features(outside, 2, 2, tilematrixset=tms)
    assert mosaic.tiles == {} == reference_cogeo_rule(outside, 2, tms)
    inside = [square(7.5, 47.5, 5, "alps.tif"), *outside]
    mosaic = from_features(inside, 3, 3, tilematrixset=tms)
    assert mosaic.tiles and mosaic.tiles == reference_cogeo_rule(inside, 3, tms)
    assert {a for assets in mosaic.tiles.values() for a in assets} == {"alps.tif"}


def test_non_quadtree_tms_is_refused_as_cogeo_mosaic_does():
    from lambda_handler.errors import NonQuadtreeTMSError

    with pytest.raises(AssertionError, match="not a quadtree") as info:
        from_features(
            [square(5, 45, 2, "a.tif")], 3, 3, tilematrixset=morecantile.tms.get("WGS1984Quad")
        )
    assert isinstance(info.value, NonQuadtreeTMSError | InvalidMosaicError)


# ---------------------------------------------------------------------------- cogeo-mosaic API
def test_asset_filter_hook_and_quiet():
    """cogeo-mosaic's `asset_filter(tile, dataset, geoms, **options)`: called per quadkey with
    the intersecting features in order, extra keyword arguments passed on."""
    from lambda_handler.mosaic import MosaicJSON, default_filter

    features = [square(10, 45, 2, "a.tif"), square(10.5, 45.5, 2, "b.tif")]
    calls = []

    def newest_only(tile, dataset, geoms, keep=1):
        calls.append((tile, [f["properties"]["path"] for f in dataset], len(geoms)))
        return list(dataset)[-keep:]

    plain = MosaicJSON.from_features(features, 6, 6, quiet=False)
    filtered = MosaicJSON.from_features(
        features, 6, 6, quiet=True, asset_filter=newest_only, keep=1
    )
    assert set(filtered.tiles) == set(plain.tiles)
    assert filtered.tiles == {qk: assets[-1:] for qk, assets in plain.tiles.items()}
    assert sorted(TMS.quadkey(t) for t, _, _ in calls) == sorted(plain.tiles)
    assert all(paths == plain.tiles[TMS.quadkey(t)] and n == len(paths) for t, paths, n in calls)

    # cogeo-mosaic's default filter given explicitly: the vectorized options, same result.
    options = {"minimum_tile_cover": 0.05, "tile_cover_sort": True, "maximum_items_per_tile": 1}
    assert (
        MosaicJSON.from_features(features, 6, 6, asset_filter=default_filter, **options).tiles
        == MosaicJSON.from_features(features, 6, 6, **options).tiles
    )
    with pytest.raises(TypeError, match="unexpected builder option"):
        MosaicJSON.from_features(features, 6, 6, keep=1)


def test_from_urls_takes_quiet_and_asset_filter(sample_cogs):
    from lambda_handler.mosaic import MosaicJSON

    def first_only(tile, dataset, geoms):
        return list(dataset)[:1]

    mosaic = MosaicJSON.from_urls(sample_cogs, quiet=False, asset_filter=first_only)
    assert mosaic.tiles and all(len(assets) == 1 for assets in mosaic.tiles.values())
