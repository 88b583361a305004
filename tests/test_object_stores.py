"""The object-store backends (S3 on moto and on s3rver, GCS on gcp-storage-emulator, Azure Blob
on azurite) against one suite: what they share is one protocol (lambda_handler/backends/
object_store.py), so the same assertions run on every store. What only one store does is tested
in tests/test_s3.py, tests/test_gcs.py and tests/test_azure.py.

Each store is checked through its own client library (not through the backend under test):
the bytes stored, the keys listed, the documents planted.
"""

import gzip
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.errors import (
    InvalidMosaicError,
    MosaicAuthError,
    MosaicExistsError,
    MosaicNotFoundError,
)
from lambda_handler.mosaic.builder import from_urls
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.mosaic.tiling import quadkey_to_tile
from lambda_handler.sample_data import scene_value
from tests.cloud_buckets import (
    AZURE_HOST,
    AzureStore,
    GCSStore,
    ObjectStore,
    S3Store,
    fresh_name,
)
from tests.geometry import square
from tests.waiting import join_all

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Each store starts its stand-in (markers: pyproject.toml; the `store` fixture asks for the
# server with getfixturevalue, which conftest's marking by fixture names cannot see).
STORES = [
    pytest.param("moto", marks=[pytest.mark.aws, pytest.mark.slow]),
    pytest.param("s3rver", marks=[pytest.mark.aws, pytest.mark.slow]),
    pytest.param("gcs", marks=[pytest.mark.cloud, pytest.mark.slow]),
    pytest.param("azure", marks=[pytest.mark.cloud, pytest.mark.slow]),
]


@pytest.fixture(params=STORES)
def store(request, monkeypatch) -> ObjectStore:
    """Each object store in turn, with a fresh bucket or container."""
    if request.param == "gcs":
        return GCSStore(monkeypatch, request.getfixturevalue("gcs_emulator"))
    if request.param == "azure":
        return AzureStore(monkeypatch, request.getfixturevalue("azurite"))
    return S3Store(monkeypatch, request.getfixturevalue(f"{request.param}_server"))


def write(uri: str, document: MosaicJSON, overwrite: bool = False) -> None:
    with MosaicBackend(uri, mosaic_def=document) as backend:
        backend.write(overwrite=overwrite)


def all_assets(document: MosaicJSON) -> set[str]:
    return {asset for assets in document.tiles.values() for asset in assets}


def tile_of(mosaic: MosaicJSON, asset: str) -> tuple[int, int, int]:
    """The tile of the quadkey listing only `asset`."""
    quadkey = next(qk for qk, assets in mosaic.tiles.items() if assets == [asset])
    return quadkey_to_tile(quadkey)


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("key", ["mosaic.json", "nested/dir/mosaic.json.gz"])
def test_round_trip(store, mosaic, key):
    uri = store.uri(key)
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        assert isinstance(backend, store.backend_class)
        backend.write()
    raw = store.stored_bytes(key)
    if key.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert json.loads(raw)["name"] == mosaic.name
    assert json.loads(raw)["tiles"] == mosaic.tiles
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.tiles == mosaic.tiles
        stored = backend.to_document()
        assert stored == mosaic
        assert stored.tiles == mosaic.tiles
        assert stored.bounds == pytest.approx(mosaic.bounds)
        assert backend.get_assets(*tile_of(mosaic, "a.tif")) == ["a.tif"]


def test_key_sharing_container_characters_is_stored_under_the_full_key(store, mosaic):
    """cogeo-mosaic strips the container's name as a set of characters from the key: here that
    would eat characters off both ends."""
    container = store.container
    key = f"{container}/m{container[::-1]}.json"
    MosaicBackend(store.uri(key), mosaic_def=mosaic).write()
    assert store.keys() == [key]
    assert MosaicBackend(store.uri(key)).to_document().tiles == mosaic.tiles


def test_list_keys_is_the_stores_listing(store, mosaic):
    for key in ("a/one.json", "a/two.json.gz", "b/three.json"):
        MosaicBackend(store.uri(key), mosaic_def=mosaic).write()
    backend = MosaicBackend(store.uri("a/one.json"))
    assert backend.list_keys() == store.keys()
    assert backend.list_keys("a/") == ["a/one.json", "a/two.json.gz"]


def test_update_is_stored(store, mosaic):
    uri = store.uri("m.json.gz")
    MosaicBackend(uri, mosaic_def=mosaic).write()
    with MosaicBackend(uri) as backend:
        backend.update([square(30.0, 30.0, 1.0, "d.tif")])
    stored = MosaicBackend(uri).to_document()
    assert "d.tif" in all_assets(stored)
    assert stored.version != mosaic.version


# ---------------------------------------------------------------------------- overwrite rules
def test_overwrite_rules(store, mosaic):
    uri = store.uri("m.json")
    write(uri, mosaic)
    other = mosaic.model_copy(update={"name": "other"})
    with pytest.raises(MosaicExistsError, match="already exists"):
        write(uri, other, overwrite=False)
    assert MosaicBackend(uri).mosaic_def.name == mosaic.name
    cache.clear_all()
    assert MosaicBackend(uri).mosaic_def.name == mosaic.name
    write(uri, other, overwrite=True)
    assert MosaicBackend(uri).mosaic_def.name == "other"
    cache.clear_all()
    assert MosaicBackend(uri).mosaic_def.name == "other"


def test_concurrent_creators(store, mosaic):
    """Writers create the same key at once: the stored document is one winner's, whole; where
    the store checks the create-only precondition itself, exactly one wins."""
    uri = store.uri("race.json")
    store.before_create_race(mosaic)
    writers = 6
    barrier = threading.Barrier(writers, timeout=60)
    outcomes: dict[str, str] = {}

    def create(tag: str) -> None:
        backend = MosaicBackend(uri, mosaic_def=mosaic.model_copy(update={"name": tag}))
        barrier.wait()
        try:
            backend.write(overwrite=False)
            outcomes[tag] = "won"
        except MosaicExistsError:
            outcomes[tag] = "lost"

    threads = [threading.Thread(target=create, args=(f"w{i}",)) for i in range(writers)]
    for thread in threads:
        thread.start()
    join_all(threads, timeout=300, what="the concurrent creators")
    cache.clear_all()
    stored = MosaicBackend(uri).to_document()
    assert len(outcomes) == writers
    assert outcomes.get(stored.name) == "won"
    assert stored.tiles == mosaic.tiles
    if store.atomic_create:
        assert list(outcomes.values()).count("won") == 1


# ---------------------------------------------------------------------------- errors
def test_missing_container(store, mosaic):
    missing = fresh_name("no-such")
    uri = store.uri("m.json", container=missing)
    message = f"{store.container_noun} not found: '{missing}'"
    with pytest.raises(MosaicNotFoundError, match=message):
        MosaicBackend(uri)
    with pytest.raises(MosaicNotFoundError, match=message):
        write(uri, mosaic)


def test_missing_object(store, mosaic):
    message = f"not found: .*'nope.json' does not exist in {store.container_noun}"
    with pytest.raises(MosaicNotFoundError, match=message):
        MosaicBackend(store.uri("nope.json"))
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(store.uri("nope.json"), mosaic_def=mosaic).delete()


def test_delete(store, mosaic):
    uri = store.uri("gone.json.gz")
    write(uri, mosaic)
    MosaicBackend(uri).delete()  # also drops the cached document
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)
    assert store.keys() == []


def test_invalid_document(store):
    store.put("bad.json.gz", b'{"not": "gzip"}')
    with pytest.raises(InvalidMosaicError):
        MosaicBackend(store.uri("bad.json.gz"))


def test_refused_credentials_are_auth_errors(store, mosaic, fault_proxy):
    """A store refusing our identity (403 from a proxy in front of moto, s3rver and the GCS
    emulator; a wrong account key on azurite) answers MosaicAuthError, reading and writing."""
    uri = store.uri("m.json")
    write(uri, mosaic)
    cache.clear_all()
    store.refuse_credentials(fault_proxy)
    with pytest.raises(MosaicAuthError, match="access denied"):
        MosaicBackend(uri)
    with pytest.raises(MosaicAuthError):
        write(uri, mosaic, overwrite=True)


@pytest.mark.slow  # a fresh interpreter importing the package: several seconds
@pytest.mark.parametrize(
    ("library", "uri", "extra"),
    [
        ("google.cloud.storage", "gs://bucket/mosaic.json", "gcs"),
        ("azure.storage.blob", f"az://{AZURE_HOST}/cont/mosaic.json", "azure"),
    ],
)
def test_missing_extra_names_it(library, uri, extra):
    """Without its optional client library a store's URI says which extra to install."""
    code = (
        "import sys\n"
        f"sys.modules[{library!r}] = None\n"  # hides the library from imports
        "from lambda_handler.backends import MosaicBackend\n"
        "from lambda_handler.errors import BackendNotAvailableError\n"
        "try:\n"
        f"    MosaicBackend({uri!r})\n"
        "except BackendNotAvailableError as err:\n"
        "    print('ERROR', err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    )
    assert "ERROR" in result.stdout, result.stderr
    # Quoted, so the command can be pasted into a shell (brackets are a glob there).
    assert f'pip install "lambda-mosaic-tiler[{extra}]"' in result.stdout


# ---------------------------------------------------------------------------- tiles from the store
# A point in one scene only, for two scenes: (lon, lat) -> index of the scene.
POINTS_IN_ONE_SCENE = {(-78.6, 45.1): 0, (-77.95, 45.75): 2}


def test_tile_from_cogs_in_the_store(store, sample_cogs):
    """COGs and mosaic both in the store; GDAL reads the COGs from it (/vsis3/, /vsigs/,
    /vsiaz/) and a tile over one scene holds that scene's values, nothing else."""
    urls = []
    for path in sample_cogs:
        key = f"cogs/{Path(path).name}"
        store.put(key, Path(path).read_bytes())
        urls.append(store.asset_url(key))
    document = from_urls(urls, minzoom=8, maxzoom=13, max_threads=2)
    uri = store.uri("mosaics/scenes.json.gz")
    MosaicBackend(uri, mosaic_def=document).write()

    for (lon, lat), scene in POINTS_IN_ONE_SCENE.items():
        with MosaicBackend(uri) as backend:
            tile = backend.tms.tile(lon, lat, 12)
            image, used = backend.tile(tile.x, tile.y, tile.z)
        assert used == [urls[scene]]
        data = image.array
        valid = ~data.mask[0]
        assert valid.all()
        band1 = data[0][valid].astype(int)
        gradient = band1 - scene_value(scene, 1)
        assert gradient.min() >= 0 and gradient.max() <= 7  # the scene's values, nothing else
        assert np.array_equal(data[1][valid].astype(int), scene_value(scene, 2) + gradient)
        assert np.array_equal(data[2][valid].astype(int), scene_value(scene, 3) + gradient)
