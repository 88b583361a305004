"""Azure Blob backend against azurite (started by tests/servers_cloud.py)."""

import gzip
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.azure import AzureBackend, azure_client, parse_azure_uri
from lambda_handler.errors import (
    InvalidMosaicError,
    MosaicAuthError,
    MosaicExistsError,
    MosaicNotFoundError,
)
from lambda_handler.mosaic.builder import from_urls
from lambda_handler.sample_data import scene_value
from tests.test_builder import square

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "devstoreaccount1.blob.core.windows.net"


@pytest.fixture
def container(azurite, monkeypatch):
    """azurite for the SDK and GDAL (one connection string); a fresh container per test."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    name = f"mosaics-{uuid.uuid4().hex[:12]}"
    service().create_container(name)
    return name


def service():
    return azure_client(parse_azure_uri(f"az://{HOST}/any/thing.json"))


def stored_bytes(container: str, key: str) -> bytes:
    return service().get_blob_client(container, key).download_blob().readall()


# ---------------------------------------------------------------------------- URI parsing
@pytest.mark.parametrize(
    ("uri", "account", "container", "key"),
    [
        (f"az://{HOST}/cont/mosaic.json", "devstoreaccount1", "cont", "mosaic.json"),
        # cogeo-mosaic strips the container name as a set of characters from the key: here
        # that would eat "tnoc" and "con" off both ends.
        (f"az://{HOST}/cont/tnoc/contcon.json", "devstoreaccount1", "cont", "tnoc/contcon.json"),
        ("az://acct.blob.core.chinacloudapi.cn/c-1/a/b.json.gz", "acct", "c-1", "a/b.json.gz"),
        ("az://cont/dir/cont.json", None, "cont", "dir/cont.json"),  # GDAL's short form
        (f"az://{HOST}/$web/index.json", "devstoreaccount1", "$web", "index.json"),
    ],
)
def test_parse_uri(uri, account, container, key):
    location = parse_azure_uri(uri)
    assert (location.account, location.container, location.key) == (account, container, key)


@pytest.mark.parametrize(
    "uri",
    [
        "az://",
        f"az://{HOST}",
        f"az://{HOST}/cont",
        f"az://{HOST}/cont/",
        f"az://{HOST}/Cont/k.json",  # upper case
        f"az://{HOST}/co--nt/k.json",  # double hyphen
        f"az://{HOST}/ab/k.json",  # too short
        "az://Bad_Account.blob.core.windows.net/cont/k.json",
        "az://account.queue.core.windows.net/cont/k.json",
    ],
)
def test_parse_uri_rejects(uri):
    with pytest.raises(InvalidMosaicError, match="az://"):
        parse_azure_uri(uri)


def test_key_sharing_container_characters_is_stored_under_the_full_key(container, mosaic):
    key = f"{container}/{container[::-1]}.json"
    MosaicBackend(f"az://{HOST}/{container}/{key}", mosaic_def=mosaic).write()
    names = list(service().get_container_client(container).list_blob_names())
    assert names == [key]


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["mosaic.json", "nested/dir/mosaic.json.gz"])
def test_round_trip(container, mosaic, name):
    uri = f"az://{HOST}/{container}/{name}"
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        assert isinstance(backend, AzureBackend)
        backend.write()
    raw = stored_bytes(container, name)
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert json.loads(raw)["name"] == mosaic.name
    with MosaicBackend(uri) as backend:
        stored = backend.to_document()
        assert stored.tiles == mosaic.tiles
        assert stored.bounds == pytest.approx(mosaic.bounds)


def test_short_form_uses_the_connection_string_account(container, mosaic):
    MosaicBackend(f"az://{container}/short.json", mosaic_def=mosaic).write()
    stored = MosaicBackend(f"az://{HOST}/{container}/short.json").to_document()
    assert stored.tiles == mosaic.tiles


def test_update_is_stored(container, mosaic):
    uri = f"az://{HOST}/{container}/m.json.gz"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    with MosaicBackend(uri) as backend:
        backend.update([square(30.0, 30.0, 1.0, "d.tif")])
    stored = MosaicBackend(uri).to_document()
    assert "d.tif" in {a for assets in stored.tiles.values() for a in assets}


# ---------------------------------------------------------------------------- overwrite rules
def test_overwrite_false_keeps_the_existing_blob(container, mosaic):
    uri = f"az://{HOST}/{container}/m.json"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    other = mosaic.model_copy(update={"name": "other"})
    with pytest.raises(MosaicExistsError, match="already exists"):
        MosaicBackend(uri, mosaic_def=other).write(overwrite=False)
    assert MosaicBackend(uri).mosaic_def.name == mosaic.name
    MosaicBackend(uri, mosaic_def=other).write(overwrite=True)
    assert MosaicBackend(uri).mosaic_def.name == "other"


def test_concurrent_create_only_writers_exactly_one_wins(container, mosaic):
    uri = f"az://{HOST}/{container}/race.json"
    writers = 6
    barrier = threading.Barrier(writers)
    outcomes: dict[int, str] = {}

    def write(index: int) -> None:
        backend = MosaicBackend(uri, mosaic_def=mosaic.model_copy(update={"name": f"w{index}"}))
        barrier.wait()
        try:
            backend.write(overwrite=False)
            outcomes[index] = "won"
        except MosaicExistsError:
            outcomes[index] = "exists"

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == writers
    assert len(winners) == 1
    assert MosaicBackend(uri).mosaic_def.name == f"w{winners[0]}"


# ---------------------------------------------------------------------------- errors
def test_missing_container(container, mosaic):
    uri = f"az://{HOST}/{container}-missing/m.json"
    with pytest.raises(MosaicNotFoundError, match="container not found"):
        MosaicBackend(uri)
    with pytest.raises(MosaicNotFoundError, match="container not found"):
        MosaicBackend(uri, mosaic_def=mosaic).write()


def test_missing_blob(container, mosaic):
    with pytest.raises(MosaicNotFoundError, match="'nope.json' does not exist in container"):
        MosaicBackend(f"az://{HOST}/{container}/nope.json")
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(f"az://{HOST}/{container}/nope.json", mosaic_def=mosaic).delete()


def test_delete(container, mosaic):
    uri = f"az://{HOST}/{container}/m.json"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    MosaicBackend(uri).delete()
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)


def test_wrong_key_is_an_auth_error(container, mosaic, azurite, monkeypatch):
    uri = f"az://{HOST}/{container}/m.json"
    MosaicBackend(uri, mosaic_def=mosaic).write()
    wrong = azurite.connection_string.replace(azurite.key, "A" * 86 + "==")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    with pytest.raises(MosaicAuthError, match="access denied"):
        MosaicBackend(uri)
    with pytest.raises(MosaicAuthError):
        MosaicBackend(uri, mosaic_def=mosaic).write(overwrite=True)


def test_missing_extra_names_it():
    """Without azure-storage-blob an az:// URI says which extra to install."""
    code = (
        "import sys\n"
        "sys.modules['azure.storage.blob'] = None\n"  # hides the library from imports
        "from lambda_handler.backends import MosaicBackend\n"
        "from lambda_handler.errors import BackendNotAvailableError\n"
        "try:\n"
        f"    MosaicBackend('az://{HOST}/cont/mosaic.json')\n"
        "except BackendNotAvailableError as err:\n"
        "    print('ERROR', err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    )
    assert "ERROR" in result.stdout, result.stderr
    # Quoted, so the command can be pasted into a shell (brackets are a glob there).
    assert 'pip install "lambda-mosaic-tiler[azure]"' in result.stdout


# ---------------------------------------------------------------------------- tiles from Azure
def test_tile_from_cogs_in_azure(container, sample_cogs):
    """COGs and mosaic both in azurite; GDAL reads the COGs through /vsiaz/ (the same
    AZURE_STORAGE_CONNECTION_STRING)."""
    urls = []
    for path in sample_cogs:
        key = f"cogs/{Path(path).name}"
        with open(path, "rb") as handle:
            service().get_blob_client(container, key).upload_blob(handle)
        urls.append(f"az://{container}/{key}")
    document = from_urls(urls, minzoom=8, maxzoom=13, max_threads=2)
    uri = f"az://{HOST}/{container}/mosaics/scenes.json.gz"
    MosaicBackend(uri, mosaic_def=document).write()

    with MosaicBackend(uri) as backend:
        # (-77.95, 45.75) lies in scene_c only.
        tile = backend.tms.tile(-77.95, 45.75, 12)
        image, used = backend.tile(tile.x, tile.y, tile.z)
    assert used == [urls[2]]
    data = image.array
    valid = ~data.mask[0]
    assert valid.all()
    band1 = data[0][valid].astype(int)
    gradient = band1 - scene_value(2, 1)
    assert gradient.min() >= 0 and gradient.max() <= 7  # scene_c's values, nothing else
    assert np.array_equal(data[1][valid].astype(int), scene_value(2, 2) + gradient)
    assert np.array_equal(data[2][valid].astype(int), scene_value(2, 3) + gradient)
