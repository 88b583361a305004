"""Mosaic management (list, create, replace, add, delete) and credentials on writes."""

import uuid

from fastapi.testclient import TestClient

from lambda_handler.app import create_app
from lambda_handler.settings import ApiSettings
from tests.servers_api import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def new_id() -> str:
    """A fresh mosaic id (tests share one store)."""
    return f"t-{uuid.uuid4().hex[:10]}"


def test_writes_need_credentials(client, api_store):
    body = {"id": new_id(), "urls": api_store.scene_paths[:1]}
    missing = client.post("/mosaics", json=body)
    assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]
    wrong = client.post("/mosaics", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    wrong_header = client.post("/mosaics", json=body, headers={"x-api-key": "nope"})
    assert wrong_header.status_code == 403
    for method in ("PUT", "PATCH"):
        response = client.request(method, "/mosaics/scenes", json={"urls": ["x"]})
        assert response.status_code == 401
    assert client.delete("/mosaics/scenes").status_code == 401
    assert client.delete("/mosaics/scenes", headers={"x-api-key": "nope"}).status_code == 403
    # nothing was written or deleted
    assert client.get(f"/mosaics/{body['id']}").status_code == 404
    assert client.get("/mosaics/scenes").status_code == 200


def test_writes_disabled_without_a_key(api_store):
    settings = api_store.settings.model_copy(update={"api_key": None})
    with TestClient(create_app(settings)) as client:
        response = client.post("/mosaics", json={"id": new_id(), "urls": ["x"]})
        assert response.status_code == 403 and "MOSAIC_API_API_KEY" in response.json()["detail"]
    opened = settings.model_copy(update={"allow_anonymous_writes": True})
    with TestClient(create_app(opened)) as client:
        mosaic_id = new_id()
        response = client.post("/mosaics", json={"id": mosaic_id, "urls": api_store.scene_paths})
        assert response.status_code == 201
        assert client.delete(f"/mosaics/{mosaic_id}").status_code == 204


def test_create_list_replace_update_delete(client, api_store):
    a, b, c, d = api_store.scene_paths
    mosaic_id = new_id()
    created = client.post(
        "/mosaics",
        json={
            "id": mosaic_id,
            "urls": [a, b],
            "minzoom": 7,
            "maxzoom": 10,
            "quadkey_zoom": 8,
            "tile_format": "png",
            "tile_scale": 2,
        },
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    tilejson = created.json()
    assert tilejson["tilejson"] == "3.0.0" and tilejson["id"] == mosaic_id
    assert tilejson["tiles"][0].endswith(
        f"/mosaics/{mosaic_id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}@2x.png"
    )
    assert created.headers["location"].endswith(f"/mosaics/{mosaic_id}")
    meta = client.get(f"/mosaics/{mosaic_id}").json()
    assert (meta["minzoom"], meta["maxzoom"], meta["quadkey_zoom"]) == (7, 10, 8)

    again = client.post("/mosaics", json={"id": mosaic_id, "urls": [c]}, headers=AUTH)
    assert again.status_code == 409

    listed = client.get("/mosaics", params={"limit": 1000}).json()
    assert mosaic_id in [m["id"] for m in listed["mosaics"]] and "scenes" in [
        m["id"] for m in listed["mosaics"]
    ]
    page = client.get("/mosaics", params={"limit": 1}).json()
    assert page["numberReturned"] == 1 and page["numberMatched"] == listed["numberMatched"]
    next_link = next(link["href"] for link in page["links"] if link["rel"] == "next")
    second = client.get(next_link).json()
    assert second["mosaics"][0]["id"] != page["mosaics"][0]["id"]

    added = client.patch(
        f"/mosaics/{mosaic_id}", json={"urls": [d], "add_first": False}, headers=AUTH
    )
    assert added.status_code == 200, added.text
    assert added.json()["version"] == "1.0.1"
    everything = client.get(f"/mosaics/{mosaic_id}/bbox/-80,44,-76,47/assets").json()
    assert sorted(everything) == sorted([a, b, d])

    replaced = client.put(f"/mosaics/{mosaic_id}", json={"urls": [c]}, headers=AUTH)
    assert replaced.status_code == 200, replaced.text
    assert client.get(f"/mosaics/{mosaic_id}/bbox/-80,44,-76,47/assets").json() == [c]

    assert client.delete(f"/mosaics/{mosaic_id}", headers=AUTH).status_code == 204
    assert client.get(f"/mosaics/{mosaic_id}").status_code == 404
    assert client.delete(f"/mosaics/{mosaic_id}", headers=AUTH).status_code == 404
    missing = client.put(f"/mosaics/{new_id()}", json={"urls": [c]}, headers=AUTH)
    assert missing.status_code == 404


def test_create_from_document_and_features(client, api_store):
    document = client.get("/mosaics/scene-a", params={"tiles": "true"}).json()
    mosaic_id = new_id()
    created = client.post("/mosaics", json={"id": mosaic_id, "mosaic": document}, headers=AUTH)
    assert created.status_code == 201, created.text
    assert client.get(f"/mosaics/{mosaic_id}/info").json()["mosaic_minzoom"] == 8
    feature = {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-78, 45], [-77.9, 45], [-77.9, 45.1], [-78, 45.1], [-78, 45]]],
        },
        "properties": {"path": api_store.scene_paths[3]},
    }
    added = client.patch(f"/mosaics/{mosaic_id}", json={"features": [feature]}, headers=AUTH)
    assert added.status_code == 200
    assets = client.get(f"/mosaics/{mosaic_id}/point/-77.95,45.05/assets").json()
    assert assets[0] == api_store.scene_paths[3]  # add_first defaults to true
    assert client.delete(f"/mosaics/{mosaic_id}", headers=AUTH).status_code == 204


def test_create_errors(client, api_store):
    unreadable = client.post(
        "/mosaics",
        json={"id": new_id(), "urls": [str(api_store.directory / "nope.tif")]},
        headers=AUTH,
    )
    assert unreadable.status_code == 424 and "nope.tif" in unreadable.text
    both = client.post(
        "/mosaics",
        json={"id": new_id(), "urls": api_store.scene_paths, "mosaic": {}},
        headers=AUTH,
    )
    assert both.status_code == 422 and "exactly one" in both.text
    bad_id = client.post("/mosaics", json={"id": "../x", "urls": ["a"]}, headers=AUTH)
    # the id's pattern is in the OpenAPI schema: FastAPI refuses it, naming the body's "id"
    assert bad_id.status_code == 422 and bad_id.json()["detail"][0]["loc"] == ["body", "id"]
    bad_doc = client.post(
        "/mosaics", json={"id": new_id(), "mosaic": {"mosaicjson": "9.9"}}, headers=AUTH
    )
    assert bad_doc.status_code == 422 and "9.9" in bad_doc.text


def test_read_only_store(api_server):
    # The HTTP backend reads documents over HTTP (here: our own server's full documents).
    settings = ApiSettings(
        mosaic_uri_template=f"{api_server}/mosaics/{{mosaic_id}}?tiles=true",
        api_key=API_KEY,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/mosaics/scenes/info").json()["name"] == "scenes"
        response = client.delete("/mosaics/scenes", headers=AUTH)
        assert response.status_code == 405 and "read-only" in response.text
        assert client.get("/mosaics").status_code == 501
