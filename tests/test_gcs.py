"""What only the Google Cloud Storage backend does, against gcp-storage-emulator (started by
tests/servers_cloud.py): its URI, and the generation precondition it sends. What every object
store does is in tests/test_object_stores.py."""

import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.gcs import parse_gcs_uri
from lambda_handler.errors import InvalidMosaicError
from tests.cloud_buckets import gcs_requests, new_gcs_bucket, uploads


@pytest.fixture
def gcs(gcs_emulator, monkeypatch):
    """The emulator for the client library; a fresh bucket per test."""
    return new_gcs_bucket(gcs_emulator, monkeypatch)


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


# ---------------------------------------------------------------------------- preconditions
def test_create_only_write_sends_the_generation_precondition(gcs, mosaic):
    """GCS makes create-only atomic through `ifGenerationMatch=0` (the emulator ignores it,
    so the request itself is checked, as the real emulator received it)."""
    with gcs_requests() as requests:
        MosaicBackend(f"gs://{gcs}/m.json", mosaic_def=mosaic).write(overwrite=False)
        MosaicBackend(f"gs://{gcs}/m.json", mosaic_def=mosaic).write(overwrite=True)
    sent = uploads(requests)
    assert len(sent) == 2
    assert "ifGenerationMatch=0" in sent[0]
    assert "ifGenerationMatch" not in sent[1]
