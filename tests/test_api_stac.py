"""`POST /mosaics` from a STAC API search (stac-fastapi-pgstac on 127.0.0.1)."""

import io
import uuid

import morecantile
import numpy as np
from fastapi.testclient import TestClient

from lambda_handler.app import create_app
from tests.servers_api import API_KEY
from tests.stac_catalog import TEST_COLLECTION, expected_value

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Inside test item 0 only (0.5° square at 10, 45; item 1 starts at 10.4).
ITEM0_ONLY = (10.2, 45.2)


def tile_npy(client, path: str, **params) -> np.ndarray:
    tile = morecantile.tms.get("WebMercatorQuad").tile(*ITEM0_ONLY, 9)
    response = client.get(
        f"{path}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.npy", params=params
    )
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def test_create_from_stac_search(stac_api, api_store):
    body = {
        "stac_api": stac_api.search_url,
        "search": {"collections": [TEST_COLLECTION], "bbox": [10, 45, 12.5, 46]},
        "minzoom": 7,
        "maxzoom": 9,
        "tile_format": "png",
        "tile_scale": 2,
    }
    with TestClient(create_app(api_store.settings)) as client:
        with_asset = f"stac-{uuid.uuid4().hex[:8]}"
        created = client.post(
            "/mosaics",
            json={**body, "id": with_asset, "asset": "B01", "seasons": ["winter"]},
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
        assert created.json()["tiles"][0].endswith("{z}/{x}/{y}@2x.png")
        data = tile_npy(client, f"/mosaics/{with_asset}")
        assert expected_value(0, "B01") in set(data[0][data[-1] > 0].tolist())

        # items are STAC items when no asset is named: tiles then take `assets`
        items = f"stac-{uuid.uuid4().hex[:8]}"
        assert client.post("/mosaics", json={**body, "id": items}, headers=AUTH).status_code == 201
        data = tile_npy(client, f"/mosaics/{items}", assets="B02")
        assert expected_value(0, "B02") in set(data[0][data[-1] > 0].tolist())

        # every test item is dated January: a summer mosaic has nothing in it
        summer = client.post(
            "/mosaics",
            json={**body, "id": f"stac-{uuid.uuid4().hex[:8]}", "seasons": ["summer"]},
            headers=AUTH,
        )
        assert summer.status_code == 422 and "no items" in summer.text
