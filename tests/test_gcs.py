"""Google Cloud Storage backend against gcp-storage-emulator (started by tests/servers_cloud.py)."""

import gzip
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.gcs import GCSBackend, gcs_client, parse_gcs_uri
from lambda_handler.errors import InvalidMosaicError, MosaicExistsError, MosaicNotFoundError
from lambda_handler.mosaic.builder import from_urls
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.sample_data import scene_value
from tests.test_builder import square

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gcs(gcs_emulator, monkeypatch):
    """The emulator for the client library and GDAL; a fresh bucket per test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    for name, value in gcs_emulator.gdal_env.items():
        monkeypatch.setenv(name, value)
    bucket = f"mosaics-{uuid.uuid4().hex[:12]}"
    gcs_client().create_bucket(bucket)
    return bucket


def stored_bytes(bucket: str, key: str) -> bytes:
    return gcs_client().bucket(bucket).blob(key).download_as_bytes()


# ---------------------------------------------------------------------------- URI parsing
@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("gs://bucket/mosaic.json", "bucket", "mosaic.json"),
        # The key starts with the bucket's name and shares its characters: nothing is stripped.
        ("gs://data/data/data.json", "data", "data/data.json"),
        ("gs://atad/data.json.gz", "atad", "data.json.gz"),
        ("gs://my.bucket_1/a/b/c d.json", "my.bucket_1", "a/b/c d.json"),
        ("gs://b-1/k?x#y.json", "b-1", "k?x#y.json"),  # GCS keys may hold '?' and '#'
    ],
)
def test_parse_uri(uri, bucket, key):
    location = parse_gcs_uri(uri)
    assert (location.bucket, location.key) == (bucket, key)


@pytest.mark.parametrize(
    "uri", ["gs://", "gs://bucket", "gs://bucket/", "gs://bucket/dir/", "gs://Upper/k.json"]
)
def test_parse_uri_rejects(uri):
    with pytest.raises(InvalidMosaicError, match="gs://"):
        parse_gcs_uri(uri)


def test_key_sharing_bucket_characters_is_stored_under_the_full_key(gcs, mosaic):
    uri = f"gs://{gcs}/{gcs}/m{gcs}.json"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    names = [blob.name for blob in gcs_client().list_blobs(gcs)]
    assert names == [f"{gcs}/m{gcs}.json"]
    assert MosaicBackend(uri).to_document().tiles == mosaic.tiles


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["mosaic.json", "nested/dir/mosaic.json.gz"])
def test_round_trip(gcs, mosaic, name):
    uri = f"gs://{gcs}/{name}"
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        assert isinstance(backend, GCSBackend)
        backend.write()
    raw = stored_bytes(gcs, name)
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert json.loads(raw)["name"] == mosaic.name
    with MosaicBackend(uri) as backend:
        stored = backend.to_document()
        assert stored.tiles == mosaic.tiles
        assert stored.bounds == pytest.approx(mosaic.bounds)
        assert backend.get_assets(*_tile_of(mosaic, "a.tif")) == ["a.tif"]


def _tile_of(mosaic: MosaicJSON, asset: str) -> tuple[int, int, int]:
    from lambda_handler.mosaic.tiling import quadkey_to_tile

    quadkey = next(qk for qk, assets in mosaic.tiles.items() if assets == [asset])
    return quadkey_to_tile(quadkey)


def test_update_is_stored(gcs, mosaic):
    uri = f"gs://{gcs}/m.json.gz"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    with MosaicBackend(uri) as backend:
        backend.update([square(30.0, 30.0, 1.0, "d.tif")])
    stored = MosaicBackend(uri).to_document()
    assert "d.tif" in {a for assets in stored.tiles.values() for a in assets}
    assert stored.version != mosaic.version


# ---------------------------------------------------------------------------- overwrite rules
def test_overwrite_false_keeps_the_existing_object(gcs, mosaic):
    uri = f"gs://{gcs}/m.json"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    other = mosaic.model_copy(update={"name": "other"})
    with pytest.raises(MosaicExistsError, match="already exists"):
        MosaicBackend(uri, mosaic_def=other).write(overwrite=False)
    assert MosaicBackend(uri).mosaic_def.name == mosaic.name
    MosaicBackend(uri, mosaic_def=other).write(overwrite=True)
    assert MosaicBackend(uri).mosaic_def.name == "other"


def test_create_only_write_sends_the_generation_precondition(gcs, mosaic):
    """GCS makes create-only atomic through `ifGenerationMatch=0` (the emulator ignores it,
    so the request itself is checked, as the real emulator received it)."""
    sent: list[str] = []

    def record(response, *args, **kwargs):
        if response.request.method == "POST" and "/upload/" in response.request.url:
            sent.append(response.request.url)

    session = gcs_client()._http
    session.hooks["response"].append(record)
    try:
        MosaicBackend(f"gs://{gcs}/m.json", mosaic_def=mosaic).write(overwrite=False)
        MosaicBackend(f"gs://{gcs}/m.json", mosaic_def=mosaic).write(overwrite=True)
    finally:
        session.hooks["response"].remove(record)
    assert len(sent) == 2
    assert "ifGenerationMatch=0" in sent[0]
    assert "ifGenerationMatch" not in sent[1]


# ---------------------------------------------------------------------------- errors
def test_missing_bucket(gcs, mosaic):
    uri = f"gs://{gcs}-missing/m.json"
    with pytest.raises(MosaicNotFoundError, match="bucket not found"):
        MosaicBackend(uri)
    with pytest.raises(MosaicNotFoundError, match="bucket not found"):
        MosaicBackend(uri, mosaic_def=mosaic).write()


def test_missing_object(gcs, mosaic):
    with pytest.raises(MosaicNotFoundError, match="'nope.json' does not exist in bucket"):
        MosaicBackend(f"gs://{gcs}/nope.json")
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(f"gs://{gcs}/nope.json", mosaic_def=mosaic).delete()


def test_delete(gcs, mosaic):
    uri = f"gs://{gcs}/m.json"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    MosaicBackend(uri).delete()  # also drops the cached document
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)


def test_invalid_document(gcs):
    gcs_client().bucket(gcs).blob("bad.json.gz").upload_from_string(b'{"not": "gzip"}')
    with pytest.raises(InvalidMosaicError):
        MosaicBackend(f"gs://{gcs}/bad.json.gz")


def test_missing_extra_names_it():
    """Without google-cloud-storage a gs:// URI says which extra to install."""
    code = (
        "import sys\n"
        "sys.modules['google.cloud.storage'] = None\n"  # hides the library from imports
        "from lambda_handler.backends import MosaicBackend\n"
        "from lambda_handler.errors import BackendNotAvailableError\n"
        "try:\n"
        "    MosaicBackend('gs://bucket/mosaic.json')\n"
        "except BackendNotAvailableError as err:\n"
        "    print('ERROR', err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    )
    assert "ERROR" in result.stdout, result.stderr
    # Quoted, so the command can be pasted into a shell (brackets are a glob there).
    assert 'pip install "lambda-mosaic-tiler[gcs]"' in result.stdout


# ---------------------------------------------------------------------------- tiles from GCS
def test_tile_from_cogs_in_gcs(gcs, sample_cogs):
    """COGs and mosaic both in the emulator; GDAL reads the COGs through /vsigs/."""
    bucket = gcs_client().bucket(gcs)
    urls = []
    for path in sample_cogs:
        key = f"cogs/{Path(path).name}"
        bucket.blob(key).upload_from_filename(path)
        urls.append(f"gs://{gcs}/{key}")
    document = from_urls(urls, minzoom=8, maxzoom=13, max_threads=2)
    uri = f"gs://{gcs}/mosaics/scenes.json.gz"
    MosaicBackend(uri, mosaic_def=document).write()

    with MosaicBackend(uri) as backend:
        # (-78.6, 45.1) lies in scene_a only.
        tile = backend.tms.tile(-78.6, 45.1, 12)
        image, used = backend.tile(tile.x, tile.y, tile.z)
    assert used == [urls[0]]
    data = image.array
    valid = ~data.mask[0]
    assert valid.all()
    band1 = data[0][valid].astype(int)
    gradient = band1 - scene_value(0, 1)
    assert gradient.min() >= 0 and gradient.max() <= 7  # scene_a's values, nothing else
    assert np.array_equal(data[1][valid].astype(int), scene_value(0, 2) + gradient)
    assert np.array_equal(data[2][valid].astype(int), scene_value(0, 3) + gradient)
