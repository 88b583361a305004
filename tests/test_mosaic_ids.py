"""Ids, versions and ETags (issue 18): colliding ids never overwrite, ids are anchored and
bounded per store, every write changes the ETag, `If-Match` guards PATCH/PUT/DELETE, versions
are validated. Through the API (in process and over a socket) and the stores themselves."""

import os
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.errors import InvalidMosaicError, InvalidMosaicNameError, MosaicExistsError
from lambda_handler.mosaic.model import MosaicJSON
from tests.lost_updates import AREA, ASSET_ROOT, initial_document, square
from tests.servers_api import API_KEY, uvicorn_server

AUTH = {"x-api-key": API_KEY}


def new_id(prefix: str = "ids") -> str:
    """A fresh mosaic id (tests share one store)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def document_body(version: str | None = None) -> dict:
    """A whole MosaicJSON document as a request body's `mosaic`."""
    document = initial_document().model_dump(mode="json", exclude_none=True)
    if version is not None:
        document["version"] = version
    return document


def addition(name: str) -> dict:
    lon, lat, size = AREA
    return {"features": [square(lon, lat, size, ASSET_ROOT + name)]}


def assets_of(client, mosaic_id: str) -> set[str]:
    response = client.get(f"/mosaics/{mosaic_id}", params={"tiles": "true"})
    assert response.status_code == 200, response.text
    return {a for assets in response.json()["tiles"].values() for a in assets}


# ---------------------------------------------------------------------------- colliding ids
def test_case_variant_of_a_stored_id_is_refused_and_never_overwrites(client):
    victim = new_id("victim")
    created = client.post("/mosaics", json={"id": victim, "mosaic": document_body()}, headers=AUTH)
    assert created.status_code == 201, created.text
    before = assets_of(client, victim)

    attacker = victim.upper()
    other = document_body()
    other["tiles"] = {qk: [ASSET_ROOT + "evil.tif"] for qk in other["tiles"]}
    refused = client.post("/mosaics", json={"id": attacker, "mosaic": other}, headers=AUTH)
    assert refused.status_code == 409, refused.text
    assert "case-insensitive" in refused.json()["detail"]
    assert victim in refused.json()["detail"]
    # Neither replace nor delete reaches the victim through the variant.
    replaced = client.put(f"/mosaics/{attacker}", json={"mosaic": other}, headers=AUTH)
    assert replaced.status_code == 404, replaced.text
    assert client.delete(f"/mosaics/{attacker}", headers=AUTH).status_code == 404
    assert assets_of(client, victim) == before


def test_sqlite_backend_refuses_to_write_a_case_colliding_table(tmp_path):
    db = tmp_path / "m.db"
    MosaicBackend(f"sqlite:///{db}:victim", mosaic_def=initial_document()).write()
    for overwrite in (False, True):
        backend = MosaicBackend(f"sqlite:///{db}:Victim", mosaic_def=initial_document())
        with pytest.raises(MosaicExistsError, match="case-insensitive"):
            backend.write(overwrite=overwrite)
    with sqlite3.connect(db) as connection:
        rows = connection.execute('SELECT count(*) FROM "victim"').fetchone()[0]
        names = [r[0] for r in connection.execute("SELECT name FROM mosaicjson_metadata")]
    assert rows == len(initial_document().tiles)
    assert names == ["victim"]


@pytest.mark.parametrize("name", ["MOSAICJSON_METADATA", "Mosaicjson_Metadata", "SQLITE_x"])
def test_sqlite_reserved_names_are_refused_in_any_case(tmp_path, name):
    with pytest.raises(InvalidMosaicNameError, match="reserved"):
        MosaicBackend(f"sqlite:///{tmp_path / 'm.db'}:{name}", mosaic_def=initial_document())


def test_reserved_name_through_the_api_is_422(client):
    response = client.post(
        "/mosaics", json={"id": "MOSAICJSON_METADATA", "mosaic": document_body()}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert "reserved" in str(response.json()["detail"])
    assert client.get("/mosaics/scenes").status_code == 200  # the store still works


# ---------------------------------------------------------------------------- anchored ids
# Non-ASCII ids are refused outright: no Unicode normalisation (NFKC folds the fullwidth
# 'ｖｉｃｔｉｍ' into 'victim') can make two accepted ids name one stored mosaic.
@pytest.mark.parametrize(
    "bad", ["evil\n", "evil\r\n", "ok\nevil", "\nevil", "ｖｉｃｔｉｍ", "café", "vi\u0307ctim"]
)
def test_ids_with_newlines_or_non_ascii_are_422(client, bad):
    response = client.post("/mosaics", json={"id": bad, "mosaic": document_body()}, headers=AUTH)
    assert response.status_code == 422, response.text
    # Refused by the body schema's pattern (naming `id`) or by the name check (naming it).
    detail = str(response.json()["detail"])
    assert "invalid mosaic name" in detail or "'id'" in detail, detail


def test_id_with_a_trailing_newline_in_the_path_is_422(client):
    response = client.get("/mosaics/scenes%0A")
    assert response.status_code == 422, response.text


def test_validate_mosaic_name_is_anchored():
    from lambda_handler.backends import validate_mosaic_name

    assert validate_mosaic_name("evil") == "evil"
    for bad in ("evil\n", "a" * 256):
        with pytest.raises(InvalidMosaicNameError):
            validate_mosaic_name(bad)


# ---------------------------------------------------------------------------- id length (file)
@pytest.fixture(scope="module")
def file_api(tmp_path_factory):
    """A uvicorn server (own process, 127.0.0.1) whose store is a directory of files."""
    directory = tmp_path_factory.mktemp("file-store")
    env = {
        **os.environ,
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"file://{directory}/{{mosaic_id}}.json",
        "MOSAIC_API_API_KEY": API_KEY,
    }
    log = directory / "uvicorn.log"
    with (
        uvicorn_server("lambda_handler.app:create_app", env, log) as base,
        httpx.Client(base_url=base, timeout=60) as http,
    ):
        yield http, directory


def test_file_store_id_too_long_for_the_file_system_is_422_naming_the_limit(file_api):
    http, directory = file_api
    long_id = "a" * 255
    response = http.post("/mosaics", json={"id": long_id, "mosaic": document_body()}, headers=AUTH)
    assert response.status_code == 422, response.text
    detail = str(response.json()["detail"])
    assert "at most 241 bytes" in detail
    assert http.get(f"/mosaics/{long_id}").status_code == 422
    assert (
        http.patch(f"/mosaics/{long_id}", json=addition("x.tif"), headers=AUTH).status_code == 422
    )
    assert list(Path(directory).glob("a*")) == []


def test_file_store_longest_allowed_id_round_trips(file_api):
    http, directory = file_api
    longest = "b" * (241 - len(".json"))
    created = http.post("/mosaics", json={"id": longest, "mosaic": document_body()}, headers=AUTH)
    assert created.status_code == 201, created.text
    updated = http.patch(f"/mosaics/{longest}", json=addition("y.tif"), headers=AUTH)
    assert updated.status_code == 200, updated.text
    assert http.delete(f"/mosaics/{longest}", headers=AUTH).status_code == 204
    assert sorted(p.name for p in Path(directory).iterdir()) == ["uvicorn.log"]


# ---------------------------------------------------------------------------- ETags
def test_every_write_changes_the_etag_even_a_replace_keeping_the_version(client):
    mosaic_id = new_id()
    body = {"id": mosaic_id, "mosaic": document_body()}
    created = client.post("/mosaics", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    first = client.get(f"/mosaics/{mosaic_id}")
    assert first.headers["ETag"] == created.headers["ETag"]
    tile_url = f"/mosaics/{mosaic_id}/tiles/WebMercatorQuad/6/33/30/assets"
    stale_assets = client.get(tile_url)
    assert stale_assets.status_code == 200, stale_assets.text
    assert stale_assets.json() == [ASSET_ROOT + "base.tif"]

    changed = document_body()
    changed["tiles"] = {qk: [ASSET_ROOT + "new.tif"] for qk in changed["tiles"]}
    replaced = client.put(f"/mosaics/{mosaic_id}", json={"mosaic": changed}, headers=AUTH)
    assert replaced.status_code == 200, replaced.text
    second = client.get(f"/mosaics/{mosaic_id}")
    assert second.json()["version"] == first.json()["version"] == "1.0.0"
    assert second.headers["ETag"] != first.headers["ETag"]
    assert replaced.headers["ETag"] == second.headers["ETag"]
    # A client holding the old ETag gets the new document, not a 304.
    again = client.get(f"/mosaics/{mosaic_id}", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200
    fresh = client.get(tile_url, headers={"If-None-Match": stale_assets.headers["ETag"]})
    assert fresh.status_code == 200 and fresh.json() == [ASSET_ROOT + "new.tif"]

    # Replacing with the very same document is still a write: a new ETag.
    same = client.put(f"/mosaics/{mosaic_id}", json={"mosaic": changed}, headers=AUTH)
    assert same.headers["ETag"] != second.headers["ETag"]
    patched = client.patch(f"/mosaics/{mosaic_id}", json=addition("p.tif"), headers=AUTH)
    assert patched.status_code == 200
    assert patched.headers["ETag"] == client.get(f"/mosaics/{mosaic_id}").headers["ETag"]
    assert patched.headers["ETag"] != same.headers["ETag"]


def test_file_store_etag_follows_the_stored_bytes(tmp_path):
    uri = str(tmp_path / "m.json")
    MosaicBackend(uri, mosaic_def=initial_document()).write()
    first = MosaicBackend(uri).revision
    changed = initial_document()
    changed.tiles = {qk: ["s3://x/other.tif"] for qk in changed.tiles}
    MosaicBackend(uri, mosaic_def=changed).write(overwrite=True)
    assert MosaicBackend(uri).revision != first
    assert MosaicBackend(uri).mosaic_def.version == "1.0.0"


# ---------------------------------------------------------------------------- If-Match
def test_if_match_guards_patch_put_and_delete(client):
    mosaic_id = new_id()
    created = client.post(
        "/mosaics", json={"id": mosaic_id, "mosaic": document_body()}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    etag = client.get(f"/mosaics/{mosaic_id}").headers["ETag"]

    ok = client.patch(
        f"/mosaics/{mosaic_id}", json=addition("a.tif"), headers={**AUTH, "If-Match": etag}
    )
    assert ok.status_code == 200, ok.text
    current = ok.headers["ETag"]
    assert current != etag

    # The old ETag is stale now: every write with it is refused, nothing changes.
    stale = {**AUTH, "If-Match": etag}
    patch = client.patch(f"/mosaics/{mosaic_id}", json=addition("b.tif"), headers=stale)
    assert patch.status_code == 412, patch.text
    assert "If-Match" in patch.json()["detail"] and current in patch.json()["detail"]
    put = client.put(f"/mosaics/{mosaic_id}", json={"mosaic": document_body()}, headers=stale)
    assert put.status_code == 412, put.text
    delete = client.delete(f"/mosaics/{mosaic_id}", headers=stale)
    assert delete.status_code == 412, delete.text
    assert ASSET_ROOT + "a.tif" in assets_of(client, mosaic_id)
    assert ASSET_ROOT + "b.tif" not in assets_of(client, mosaic_id)
    assert client.get(f"/mosaics/{mosaic_id}").headers["ETag"] == current

    # One of several tags matching is enough; '*' matches any stored mosaic.
    listed = client.patch(
        f"/mosaics/{mosaic_id}",
        json=addition("c.tif"),
        headers={**AUTH, "If-Match": f'"nope", {current}'},
    )
    assert listed.status_code == 200, listed.text
    put = client.put(
        f"/mosaics/{mosaic_id}", json={"mosaic": document_body()}, headers={**AUTH, "If-Match": "*"}
    )
    assert put.status_code == 200, put.text
    latest = client.get(f"/mosaics/{mosaic_id}").headers["ETag"]
    assert (
        client.delete(f"/mosaics/{mosaic_id}", headers={**AUTH, "If-Match": latest}).status_code
        == 204
    )
    assert client.get(f"/mosaics/{mosaic_id}").status_code == 404


# ---------------------------------------------------------------------------- versions
@pytest.mark.parametrize(
    "version",
    ["1" * 5000, "1.0.0\n", "1." * 40 + "0", "v1", ""],
    ids=["5000-digits", "newline", "41-parts", "letter", "empty"],
)
def test_invalid_versions_are_422(client, version):
    response = client.post(
        "/mosaics", json={"id": new_id(), "mosaic": document_body(version)}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert "version" in str(response.json()["detail"])


def test_version_validation_in_the_model():
    base = {"mosaicjson": "0.0.3"}
    assert MosaicJSON.parse({**base, "version": "2.10.300"}).version == "2.10.300"
    with pytest.raises(InvalidMosaicError, match="5000 characters"):
        MosaicJSON.parse({**base, "version": "9" * 5000})
    near_limit = MosaicJSON.parse({**base, "version": "1." + "9" * 18})
    with pytest.raises(InvalidMosaicError, match="cannot be increased"):
        near_limit.bump_version()
