"""The seed documents' code (cogeo-mosaic's docs and notebooks in ../shared/seeds) runs here
with only `cogeo_mosaic.` -> `lambda_handler.` changed, and the network replaced by the suite's
local STAC API (stac-fastapi-pgstac on PostgreSQL) and local files.

Each block is taken from the document text itself (so a changed document changes the test).
Every other adaptation is a listed text substitution that must apply. Blocks left out:
- seed 001/003 `MosaicBackend` lines for s3://, gs://, dynamodb://, https:// (they open mosaics
  that must exist in those stores; the backends are covered against the local stand-ins by
  tests/test_s3.py, test_gcs.py, test_dynamodb.py, test_http_backend.py);
- seed 004 (notebook against a deployed service: not run here).
Note: cogeo-mosaic 9.2 itself rejects the dynamic-backend recipe's `MosaicJSON(..., tiles=[])`
(a pydantic error); here an empty list is accepted as an empty index, so the recipe runs.
"""

import re
from pathlib import Path

import morecantile
import numpy as np
import pytest

from lambda_handler.mosaic import MosaicJSON
from tests.stac_catalog import TEST_COLLECTION, expected_value

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
EARTH_SEARCH = "https://earth-search.aws.element84.com/v0/search"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
LON, LAT = 10.2, 45.2  # inside test item 0 only (cloud cover 5)


def seed(prefix: str) -> str:
    """The text of seed document `prefix`; skips, like the fixtures, where ../shared is absent
    (a clone without its steering folder), fails where the folder lacks the document."""
    if not SEEDS.is_dir():
        pytest.skip(f"seed documents folder not found: {SEEDS} (../shared/seeds)")
    matches = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    assert matches, f"seed document {prefix} not found in {SEEDS}"
    return matches[0].read_text()


def ported(code: str, substitutions: list[tuple[str, str]] = ()) -> str:
    """The block with cogeo-mosaic's import paths changed and each substitution applied."""
    code = code.replace("cogeo_mosaic.", "lambda_handler.").replace(
        "from cogeo_mosaic ", "from lambda_handler "
    )
    for old, new in substitutions:
        assert old in code, f"substitution {old!r} does not apply any more"
        code = code.replace(old, new)
    return code


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def notebook_cells(text: str) -> list[str]:
    return [cell.strip() for cell in text.split("In [None]:")[1:]]


def local_tile() -> morecantile.Tile:
    return WEB_MERCATOR.tile(LON, LAT, 10)


def tile_cell_substitutions(stac_api) -> list[tuple[str, str]]:
    tile = local_tile()
    return [
        (EARTH_SEARCH, stac_api.search_url),
        ("535, 335, 10", f"{tile.x}, {tile.y}, {tile.z}"),
    ]


def localize_query(namespace: dict) -> None:
    """The notebook's Sentinel-2 query on the local collection (no data-coverage property)."""
    query = namespace["query"]
    query["collections"] = [TEST_COLLECTION]
    del query["query"]["sentinel:data_coverage"]


def test_seed_000_dynamic_stac_notebook(stac_api, capsys):
    cells = notebook_cells(seed("000"))
    code_cells = [c for c in cells if not c.startswith("#") or "import" in c or "query" in c]
    namespace: dict = {}
    class_cell = next(c for c in code_cells if "class DynamicStacBackend" in c)
    query_cell = next(c for c in code_cells if c.startswith("##  Base Query"))
    tile_cell = next(c for c in code_cells if c.startswith("# Read Tile"))
    point_cell = next(c for c in code_cells if c.startswith("# Read Point"))
    exec(ported(class_cell), namespace)
    exec(ported(query_cell), namespace)
    localize_query(namespace)
    exec(ported(tile_cell, tile_cell_substitutions(stac_api)), namespace)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "1"  # one asset for the tile: item 0
    img = namespace["img"]
    assert img.data.shape == (1, 128, 128)
    assert img.array.count() > 0  # the z10 tile is larger than the item: valid part only
    assert np.all(img.array.compressed() == expected_value(0, "B01"))

    exec(
        ported(
            point_cell,
            [
                (EARTH_SEARCH, stac_api.search_url),
                ("-1.0546875,  51.99", f"{LON}, {LAT}"),
                # Out of date for rio-tiler >= 4 (cogeo-mosaic 9.2 fails here too): a point
                # value is a PointData, its values are `.data`.
                ("v[0][0]", "v.data[0]"),
            ],
        ),
        namespace,
    )
    out = capsys.readouterr().out
    assert out.split() == ["item-00", str(expected_value(0, "B01"))]


def test_seed_002_custom_backend_recipe(stac_api):
    (block,) = python_blocks(seed("002"))
    namespace: dict = {}
    exec(ported(block), namespace)
    backend = namespace["DynamicStacBackend"]
    from lambda_handler.backends.base import BaseBackend

    assert issubclass(backend, BaseBackend)
    tile = local_tile()
    query = {"collections": [TEST_COLLECTION], "query": {"eo:cloud_cover": {"lt": 25}}}
    with backend(
        stac_api.search_url, query=query, stac_api_options={"max_items": 5}, minzoom=8, maxzoom=12
    ) as mosaic:
        assert mosaic.assets_for_tile(tile.x, tile.y, tile.z) == [stac_api.item_url(0)]
        img, used = mosaic.tile(tile.x, tile.y, tile.z, assets="B01", tilesize=64, threads=0)
        values = mosaic.point(LON, LAT, assets="B01")
        assert mosaic._quadkeys == []
    assert used == [stac_api.item_url(0)]
    assert img.array.count() > 0
    assert np.all(img.array.compressed() == expected_value(0, "B01"))
    assert [(url, v.data[0]) for url, v in values] == [
        (stac_api.item_url(0), expected_value(0, "B01"))
    ]


@pytest.fixture
def local_mosaics(tmp_path, monkeypatch, sample_cogs):
    """The mosaics seed 001's `MosaicBackend` block opens, as local files."""
    from lambda_handler.backends import MosaicBackend

    monkeypatch.chdir(tmp_path)
    document = MosaicJSON.from_urls(sample_cogs)
    MosaicBackend("amosaic.json.gz", mosaic_def=document).write()
    MosaicBackend(f"sqlite:///{tmp_path / 'mosaic.db'}:amosaic", mosaic_def=document).write()
    return tmp_path, document


@pytest.mark.parametrize("prefix", ["001", "003"])
def test_seed_001_mosaic_backend_dispatch(prefix, local_mosaics, stac_api):
    tmp_path, document = local_mosaics
    text = seed(prefix)
    if prefix == "001":
        block = next(b for b in python_blocks(text) if "MosaicBackend(" in b)
    else:  # the newer page is a text dump without fences: from the import to the GCS heading
        start = text.index("from cogeo_mosaic.backends import MosaicBackend")
        block = text[start : text.index("GCS Backend")]
        block = re.sub(r"\nassert", "\n    assert", block)
    block = ported(
        block,
        [
            ("file:///amosaic.json.gz", f"file://{tmp_path}/amosaic.json.gz"),
            ("sqlite:///mosaic.db:amosaic", f"sqlite:///{tmp_path}/mosaic.db:amosaic"),
            ("stac+https://my-stac.api/search", f"stac+{stac_api.search_url}"),
            ('{"collections": ["satellite"]}', f'{{"collections": ["{TEST_COLLECTION}"]}}'),
        ],
    )
    # The block rebinds `mosaic` (the document it opens) with `as mosaic`, so its in-memory
    # lines would get a backend as document, on cogeo-mosaic as well: name the handle apart.
    block = block.replace("as mosaic:", "as backend:").replace(
        "isinstance(mosaic,", "isinstance(backend,"
    )
    # Statements opening mosaics in remote stores are left out (see the module docstring).
    statements = re.split(r"\n(?=with |# )", block)
    remote = ("s3://", "gs://", "dynamodb://", "https://mosaic.com")
    kept = [s for s in statements if not any(r in s for r in remote)]
    assert len(statements) - len(kept) == 4
    namespace = {"mosaic": document}
    # The block names classes by module (`lambda_handler.backends.file.FileBackend`), as a
    # user's program that imported them would.
    exec(
        "import lambda_handler.backends.file, lambda_handler.backends.sqlite, "
        "lambda_handler.backends.stac, lambda_handler.backends.memory",
        namespace,
    )
    exec("\n".join(kept), namespace)
    assert isinstance(
        namespace["backend"], namespace["lambda_handler"].backends.memory.MemoryBackend
    )
    assert namespace["backend"].mosaic_def.tiles == document.tiles


def test_seed_001_stac_backend_examples(stac_api, capsys):
    blocks = [b for b in python_blocks(seed("001")) if "STACBackend(" in b]
    assert len(blocks) == 4
    area = {
        "type": "Polygon",
        "coordinates": [[[10.0, 45.0], [10.6, 45.0], [10.6, 45.6], [10.0, 45.6], [10.0, 45.0]]],
    }
    namespace: dict = {}
    substitutions = [(EARTH_SEARCH, stac_api.search_url)]
    first = ported(
        blocks[0],
        [
            *substitutions,
            ('"sentinel-s2-l2a-cogs"', f'"{TEST_COLLECTION}"'),
            ('date_min="2019-01-01"', 'date_min="2024-01-01"'),
            ('date_max="2019-12-11"', 'date_max="2024-12-31"'),
            ('"lt": 5', '"lt": 25'),  # the local items' cloud cover starts at 5
            ('"intersects": geojson["features"][0]["geometry"]', f'"intersects": {area!r}'),
            ("print(mosaic.metadata)", "print(mosaic.mosaic_def.model_dump(exclude={'tiles'}))"),
            # mercantile is imported but unused, and no dependency (of cogeo-mosaic 9 either).
            ("import mercantile", "import morecantile"),
        ],
    )
    exec(first, namespace)
    out = capsys.readouterr().out
    assert "'minzoom': 8" in out and "'maxzoom': 15" in out
    for block in blocks[1:]:
        code = ported(
            block,
            [
                *substitutions,
                ("query={}", f"query={{'collections': ['{TEST_COLLECTION}']}}"),
                ("print(mosaic.metadata)", "print(mosaic.mosaic_def.bounds)"),
            ],
        )
        exec(code, namespace)
        assert capsys.readouterr().out.strip()
