"""Issue 16, "no one gets in": the ?url= form's allow-list (URL parsing: test_url_policy.py),
assets allow-listed at write and read (GDAL never opens a forbidden one, and probes no
side-cars), error bodies that
reveal nothing of the server, a STAC client that stays on its origin, trusted hosts in public
links, credentials before the body, write CORS, and the writer function's IAM check."""

import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from lambda_handler import handler as handler_module
from lambda_handler.app import create_app
from lambda_handler.backends import MosaicBackend
from lambda_handler.mosaic.builder import dataset_footprint, from_features
from lambda_handler.settings import ApiSettings
from lambda_handler.stac.client import StacApiError, search
from tests.lambda_support import OVERLAP, function_url_event, http_api_event, rest_api_event
from tests.lambda_support import tile_path as lambda_tile_path
from tests.servers_api import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_url_form_refuses_prefix_tricks(client, api_store):
    # api_store allows f"file://{directory}/" and its SQLite file for ?url=
    directory = api_store.directory
    ok = client.get("/mosaic/info", params={"url": f"file://{directory}/scenes.json"})
    assert ok.status_code == 200, ok.text
    for url in (
        f"file://{directory}-secret/scenes.json",
        f"sqlite:///{api_store.db}x:scenes",
        f"http://{directory}@169.254.169.254/latest/meta-data/",
    ):
        response = client.get("/mosaic/info", params={"url": url})
        assert response.status_code == 403, (url, response.text)
        assert response.headers["content-type"] == "application/json"


# ---------------------------------------------------------------------------- asset allow-list
class RecordingServer:
    """A static file server on 127.0.0.1 recording every path asked for (GET, HEAD, ranges)."""

    def __init__(self, root: Path):
        self.paths: list[str] = []
        recorder = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as GDAL expects of a COG server

            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def send_head(self):
                recorder.paths.append(self.path)
                path = self.translate_path(self.path)
                if not Path(path).is_file():
                    return super().send_head()
                data = Path(path).read_bytes()
                header = self.headers.get("Range")
                if header and header.startswith("bytes="):
                    start_text, _, end_text = header[6:].partition("-")
                    start = int(start_text)
                    end = min(int(end_text) if end_text else len(data) - 1, len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                    chunk = data[start : end + 1]
                else:
                    self.send_response(200)
                    chunk = data
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                import io

                return io.BytesIO(chunk)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cog_server(sample_cogs) -> Iterator[RecordingServer]:
    server = RecordingServer(Path(sample_cogs[0]).parent)
    try:
        yield server
    finally:
        server.close()


def _store_with(db: Path, mosaic_id: str, assets_and_footprints: list[tuple[str, str]]) -> None:
    features = [
        {"type": "Feature", "geometry": dataset_footprint(path)["geometry"],
         "properties": {"path": asset}}
        for asset, path in assets_and_footprints
    ]  # fmt: skip
    document = from_features(features, 8, 10)
    MosaicBackend(f"sqlite:///{db}:{mosaic_id}", mosaic_def=document).write(overwrite=True)


def test_assets_outside_the_list_are_refused_at_write(tmp_path, sample_cogs, cog_server):
    settings = ApiSettings(
        mosaic_uri_template=f"sqlite:///{tmp_path / 'm.db'}:{{mosaic_id}}",
        api_key=API_KEY,
        allowed_asset_prefixes=[f"{cog_server.url}/"],
    )
    with TestClient(create_app(settings)) as client:
        for bad in (
            "http://169.254.169.254/latest/meta-data/x.tif",
            sample_cogs[0],  # a local file: not under the allowed prefix
            f"{cog_server.url}/../etc/passwd",
            f"/vsicurl/{cog_server.url}/scene_a_uint8.tif",
        ):
            response = client.post(
                "/mosaics", json={"id": "m" + uuid.uuid4().hex[:6], "urls": [bad]}, headers=AUTH
            )
            assert response.status_code == 422, (bad, response.text)
            assert bad in response.text and "urls" in response.text
        assert cog_server.paths == []  # nothing was fetched to find out
        good = f"{cog_server.url}/{Path(sample_cogs[0]).name}"
        created = client.post("/mosaics", json={"id": "good", "urls": [good]}, headers=AUTH)
        assert created.status_code == 201, created.text
        # a whole document naming a forbidden asset is refused too
        doc = MosaicBackend(f"sqlite:///{tmp_path / 'm.db'}:good").to_document()
        doc_json = json.loads(doc.to_json())
        first = next(iter(doc_json["tiles"]))
        doc_json["tiles"][first] = ["file:///etc/shadow"]
        refused = client.post("/mosaics", json={"id": "doc", "mosaic": doc_json}, headers=AUTH)
        assert refused.status_code == 422 and "/etc/shadow" in refused.text
        # a PATCH naming one, before any footprint is read
        patched = client.patch(
            "/mosaics/good", json={"urls": ["http://10.0.0.1/x.tif"]}, headers=AUTH
        )
        assert patched.status_code == 422 and "10.0.0.1" in patched.text


def test_stored_forbidden_asset_is_never_opened(tmp_path, sample_cogs, cog_server):
    db = tmp_path / "m.db"
    name = Path(sample_cogs[0]).name
    forbidden = f"{cog_server.url}/{name}"
    _store_with(db, "evil", [(forbidden, sample_cogs[0])])
    settings = ApiSettings(
        mosaic_uri_template=f"sqlite:///{db}:{{mosaic_id}}",
        allowed_asset_prefixes=[str(Path(sample_cogs[0]).parent) + "/"],
        cors_origins=["*"],
    )
    with TestClient(create_app(settings)) as client:
        tile = client.get(
            lambda_tile_path("evil", -78.4, 45.2, 9), headers={"Origin": "http://a.test"}
        )
        assert tile.status_code == 403, tile.text
        assert forbidden in tile.json()["detail"]
        assert tile.headers["access-control-allow-origin"] == "*"
        point = client.get("/mosaics/evil/point/-78.4,45.2")
        assert point.status_code == 403 and forbidden in point.text
    assert cog_server.paths == []  # GDAL never asked the server for anything


def test_no_side_car_probes(tmp_path, sample_cogs, cog_server):
    db = tmp_path / "m.db"
    name = Path(sample_cogs[0]).name
    _store_with(db, "remote", [(f"{cog_server.url}/{name}", sample_cogs[0])])
    settings = ApiSettings(
        mosaic_uri_template=f"sqlite:///{db}:{{mosaic_id}}",
        allowed_asset_prefixes=[f"{cog_server.url}/"],
    )
    with TestClient(create_app(settings)) as client:
        tile = client.get(lambda_tile_path("remote", -78.4, 45.2, 9))
        assert tile.status_code == 200, tile.text
    assert cog_server.paths, "the COG was read over HTTP"
    assert {p.split("?")[0] for p in cog_server.paths} == {f"/{name}"}, cog_server.paths


def test_error_bodies_reveal_no_local_paths_or_file_existence(tmp_path, sample_cogs):
    db = tmp_path / "m.db"
    missing = tmp_path / "missing.tif"
    not_raster = tmp_path / "secret.tif"
    not_raster.write_text("db_password=hunter2\n")
    _store_with(db, "missing", [(str(missing), sample_cogs[0])])
    _store_with(db, "notraster", [(str(not_raster), sample_cogs[0])])
    settings = ApiSettings(mosaic_uri_template=f"sqlite:///{db}:{{mosaic_id}}")
    with TestClient(create_app(settings)) as client:
        answers = [
            client.get(lambda_tile_path(mosaic_id, -78.4, 45.2, 9)).json()["detail"]
            for mosaic_id in ("missing", "notraster")
        ]
    # the same words whether the file exists or not; no GDAL text, no /vsi forms
    assert answers[0].replace(str(missing), "X") == answers[1].replace(str(not_raster), "X")
    for text in answers:
        assert "No such file" not in text and "not recognized" not in text
        assert "/vsi" not in text and "hunter2" not in text


# ---------------------------------------------------------------------------- STAC client
def test_stac_client_stays_on_its_origin(stac_fixture_server):
    # a redirect to another origin (localhost instead of 127.0.0.1) is refused
    with pytest.raises(StacApiError, match="redirect") as err:
        search(stac_fixture_server.search_url("redirect"))
    assert "localhost" in str(err.value)
    # a next link to another origin too, unless an allow-list admits it
    with pytest.raises(StacApiError, match="next link"):
        search(stac_fixture_server.search_url("offsite"))
    base = stac_fixture_server.base_url
    items = search(
        stac_fixture_server.search_url("offsite"),
        allowed_prefixes=[base + "/", base.replace("127.0.0.1", "localhost") + "/"],
    )
    assert len(items) > 10
    with pytest.raises(StacApiError, match="not under an allowed prefix"):
        search(stac_fixture_server.search_url("offsite"), allowed_prefixes=[base + "/offsite/"])
    # a redirect on the same origin is followed
    assert len(search(stac_fixture_server.search_url("sameredirect"))) == len(items)


def test_stac_api_url_is_checked_at_write(api_store):
    settings = api_store.settings.model_copy(
        update={"allowed_asset_prefixes": ["https://stac.example/"]}
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/mosaics",
            json={"id": "s", "stac_api": "http://169.254.169.254/search", "minzoom": 7,
                  "maxzoom": 9},
            headers=AUTH,
        )  # fmt: skip
    assert response.status_code == 422 and "169.254.169.254" in response.text


# ---------------------------------------------------------------------------- public links
def test_host_header_is_not_trusted_for_public_links(api_store):
    evil = {"Host": "evil.example"}
    with TestClient(create_app(api_store.settings)) as client:
        tilejson = client.get("/mosaics/scenes/tilejson.json", headers=evil).json()
        assert "evil.example" not in tilejson["tiles"][0]
        page = client.get("/mosaics/scenes/map", headers=evil).text
        assert "evil.example" not in page
        wmts = client.get("/mosaics/scenes/WMTSCapabilities.xml", headers=evil).text
        assert "evil.example" not in wmts
    public = api_store.settings.model_copy(update={"public_url": "https://tiles.example.org"})
    with TestClient(create_app(public)) as client:
        tilejson = client.get("/mosaics/scenes/tilejson.json", headers=evil).json()
        assert tilejson["tiles"][0].startswith("https://tiles.example.org/mosaics/scenes/")
        assert 'src="https://tiles.example.org/static' in client.get("/mosaics/scenes/map").text
    listed = api_store.settings.model_copy(update={"allowed_hosts": ["maps.example.net"]})
    with TestClient(create_app(listed)) as client:
        ok = client.get("/mosaics/scenes/tilejson.json", headers={"Host": "maps.example.net"})
        assert ok.json()["tiles"][0].startswith("http://maps.example.net/")
        bad = client.get("/mosaics/scenes/tilejson.json", headers=evil)
        assert "evil.example" not in bad.json()["tiles"][0]


# ---------------------------------------------------------------------------- credentials first
def _raw_request(base: str, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send raw bytes to the server and return what it answers before closing."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_big_anonymous_post_is_refused_before_its_body(api_server):
    # 400 MB announced, none sent: the server must answer from the headers alone
    head = (
        "POST /mosaics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 400000000\r\n\r\n"
    )
    answer = _raw_request(api_server, head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"www-authenticate: Bearer" in answer.lower().replace(b"bearer", b"Bearer")
    # with the key, the size alone is refused
    answer = _raw_request(api_server, head.replace("Host: x", f"Host: x\r\nx-api-key: {API_KEY}"))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_writes_have_their_own_cors_origins(api_store):
    settings = api_store.settings  # reads: http://example.test, writes: http://writer.test
    with TestClient(create_app(settings)) as client:
        bad = client.delete("/mosaics/nope", headers={**AUTH, "Origin": "http://example.test"})
        assert "access-control-allow-origin" not in bad.headers
        good = client.delete("/mosaics/nope", headers={**AUTH, "Origin": "http://writer.test"})
        assert good.headers["access-control-allow-origin"] == "http://writer.test"


# ---------------------------------------------------------------------------- writer function
def test_writer_function_refuses_writes_without_iam_identity(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "writer")
    # the process-wide GDAL defaults of Lambda are not this test's business
    monkeypatch.setattr(handler_module, "_prepare_process", lambda batch: None)
    settings = ApiSettings(
        mosaic_uri_template=f"sqlite:///{tmp_path / 'm.db'}:{{mosaic_id}}",
        allow_anonymous_writes=True,
    )
    function = handler_module.ApiFunction(api_settings=settings)
    body = json.dumps({"id": "x", "urls": ["/nowhere.tif"]}).encode()
    anonymous_v2 = http_api_event("/mosaics", method="POST", body=body,
                                  headers={"content-type": "application/json"})  # fmt: skip
    refused = function(anonymous_v2)
    assert refused["statusCode"] == 403 and "IAM" in refused["body"]
    anonymous_v1 = rest_api_event("/mosaics/x", method="DELETE")
    assert function(anonymous_v1)["statusCode"] == 403
    # a verified identity goes on to the app (which then finds the mosaic missing: 404)
    signed_v1 = rest_api_event("/mosaics/x", method="DELETE")
    signed_v1["requestContext"]["identity"]["userArn"] = "arn:aws:iam::123456789012:user/w"
    assert function(signed_v1)["statusCode"] == 404
    signed_v2 = function_url_event("/mosaics/x", method="DELETE")
    assert function(signed_v2)["statusCode"] == 404
    # reads need no identity
    assert function(http_api_event("/healthz"))["statusCode"] == 200
    # outside Lambda (local use) the app's own rules apply
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    assert function(rest_api_event("/mosaics/x", method="DELETE"))["statusCode"] == 404


def test_tiles_still_work_through_the_handler_event(monkeypatch, api_store):
    # the trusted-host rewrite keeps API Gateway's own host in links
    function = handler_module.ApiFunction(api_settings=api_store.settings)
    response = function(http_api_event("/mosaics/scenes/tilejson.json"))
    tiles = json.loads(response["body"])["tiles"][0]
    assert tiles.startswith("https://abc123.execute-api.us-east-1.amazonaws.com/")
    assert function(http_api_event(lambda_tile_path("scenes", *OVERLAP, 9)))["statusCode"] == 200


def test_httpx_client_sees_json_on_auth_errors(api_server):
    response = httpx.post(f"{api_server}/mosaics", json={"id": "x", "urls": ["a"]})
    assert response.status_code == 401 and "credentials" in response.json()["detail"]


def test_stac_item_asset_hrefs_pass_the_allow_list(stac_api, api_store):
    """A mosaic of STAC items: the item URLs are on the (allowed) STAC API, but GDAL would open
    the hrefs of the items' assets: those must be allowed too."""
    from pathlib import Path as _Path

    from tests.stac_catalog import TEST_COLLECTION

    href = stac_api.items[0]["assets"]["B02"]["href"]
    cog_folder = str(_Path(href).parent) + "/"
    body = {
        "id": "stac-" + uuid.uuid4().hex[:8],
        "stac_api": stac_api.search_url,
        "search": {"collections": [TEST_COLLECTION], "bbox": [10, 45, 12.5, 46]},
        "minzoom": 7,
        "maxzoom": 9,
    }
    tile = lambda_tile_path(body["id"], 10.2, 45.2, 9, ".npy")
    api_only = api_store.settings.model_copy(
        update={"allowed_asset_prefixes": [stac_api.stack.root_url + "/"]}
    )
    with TestClient(create_app(api_only)) as client:
        assert client.post("/mosaics", json=body, headers=AUTH).status_code == 201
        refused = client.get(tile, params={"assets": "B02"})
        assert refused.status_code == 403, refused.text
        assert "B02" in refused.json()["detail"] or cog_folder in refused.json()["detail"]
    with_cogs = api_store.settings.model_copy(
        update={"allowed_asset_prefixes": [stac_api.stack.root_url + "/", cog_folder]}
    )
    with TestClient(create_app(with_cogs)) as client:
        assert client.get(tile, params={"assets": "B02"}).status_code == 200
