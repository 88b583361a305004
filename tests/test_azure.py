"""What only the Azure Blob backend does, against azurite (started by tests/servers_cloud.py):
its URIs, and the short form taking the account from the connection string. What every object
store does is in tests/test_object_stores.py."""

import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.azure import parse_azure_uri
from lambda_handler.errors import InvalidMosaicError
from tests.cloud_buckets import AZURE_HOST as HOST
from tests.cloud_buckets import new_azure_container


@pytest.fixture
def container(azurite, monkeypatch):
    """azurite for the SDK (a connection string); a fresh container per test."""
    return new_azure_container(azurite, monkeypatch)


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


# ---------------------------------------------------------------------------- accounts
def test_short_form_uses_the_connection_string_account(container, mosaic):
    MosaicBackend(f"az://{container}/short.json", mosaic_def=mosaic).write()
    stored = MosaicBackend(f"az://{HOST}/{container}/short.json").to_document()
    assert stored.tiles == mosaic.tiles
