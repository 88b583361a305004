"""What only the Google Cloud Storage backend does, against gcp-storage-emulator (started by
tests/servers_cloud.py): its URI, and the generation precondition it sends. What every object
store does is in tests/test_object_stores.py."""

import uuid

import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.gcs import gcs_client, parse_gcs_uri
from lambda_handler.errors import InvalidMosaicError


@pytest.fixture
def gcs(gcs_emulator, monkeypatch):
    """The emulator for the client library; a fresh bucket per test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    bucket = f"mosaics-{uuid.uuid4().hex[:12]}"
    gcs_client().create_bucket(bucket)
    return bucket


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
