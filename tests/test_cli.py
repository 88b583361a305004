"""The `mosaic-tiler` command, run as a real process."""

import gzip
import json
import subprocess
import sys

import pytest


def run(*args: str, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lambda_handler.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    message = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in message, result.stderr


def test_create_info_list_to_geojson_delete(sample_cogs, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}:demo"
    created = run("create", *sample_cogs, "--output", uri, "--quadkey-zoom", "9", "--name", "demo")
    assert created.returncode == 0, created.stderr
    assert "wrote" in created.stderr

    info = run("info", uri, "--json", "--quadkeys")
    assert info.returncode == 0, info.stderr
    details = json.loads(info.stdout)
    assert details["name"] == "demo"
    assert details["mosaic_quadkey_zoom"] == 9
    assert details["data_type"] == "uint8"
    assert details["quadkeys"] and all(len(q) == 9 for q in details["quadkeys"])

    listed = run("list", f"sqlite:///{tmp_path / 'store.db'}")
    assert listed.stdout.split() == ["demo"]

    geojson = json.loads(run("to-geojson", uri).stdout)
    assert len(geojson["features"]) == len(details["quadkeys"])
    assets = {a for f in geojson["features"] for a in f["properties"]["assets"]}
    assert assets == set(sample_cogs)

    again = run("create", *sample_cogs, "--output", uri)
    assert_clean_error(again, "already exists")

    assert run("delete", uri, "--yes").returncode == 0
    assert_clean_error(run("info", uri), "not found")


def test_create_to_stdout_then_upload_and_update(sample_cogs, tmp_path):
    created = run("create", *sample_cogs[:2])
    assert created.returncode == 0, created.stderr
    document = json.loads(created.stdout)
    assert document["mosaicjson"] == "0.0.3"
    source = tmp_path / "doc.json"
    source.write_text(created.stdout)

    target = tmp_path / "copy.json.gz"
    uploaded = run("upload", str(source), str(target))
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(gzip.decompress(target.read_bytes()))["tiles"] == document["tiles"]

    updated = run("update", str(target), *sample_cogs[2:])
    assert updated.returncode == 0, updated.stderr
    merged = json.loads(gzip.decompress(target.read_bytes()))
    assert merged["version"] == "1.0.1"
    assert {a for v in merged["tiles"].values() for a in v} == set(sample_cogs)


def test_footprints_round_trip(sample_cogs, tmp_path):
    footprints = tmp_path / "footprints.geojson"
    result = run("footprint", *sample_cogs, "--output", str(footprints))
    assert result.returncode == 0, result.stderr
    collection = json.loads(footprints.read_text())
    assert [f["properties"]["path"] for f in collection["features"]] == sample_cogs

    from_footprints = run(
        "create", "--footprints", str(footprints), "--minzoom", "8", "--maxzoom", "12"
    )
    assert from_footprints.returncode == 0, from_footprints.stderr
    assert json.loads(from_footprints.stdout)["maxzoom"] == 12

    urls_file = tmp_path / "urls.txt"
    urls_file.write_text("\n".join(sample_cogs))
    from_list = run("create", "--urls-file", str(urls_file))
    assert (
        json.loads(from_list.stdout)["tiles"]
        == json.loads(run("create", *sample_cogs).stdout)["tiles"]
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("info", "/no/such/mosaic.json"), ["mosaic file not found"]),
        (("info", "ftp://host/x.json"), ["unsupported mosaic URI scheme"]),
        (("create", "/no/such.tif"), ["Could not read 1 dataset", "/no/such.tif", "--skip-errors"]),
        (("create",), ["give COG paths"]),
        (("create", "/no/such.tif", "--skip-errors"), ["no COG could be read"]),
        (("info", "sqlite:///x.db:bad/name"), ["invalid mosaic name"]),
        (
            ("create", "--footprints", "/no/file.geojson", "--minzoom", "1", "--maxzoom", "2"),
            ["cannot read"],
        ),
    ],
)
def test_errors_are_one_clear_line(args, fragments):
    assert_clean_error(run(*args), *fragments)


def test_malformed_document_upload(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"mosaicjson": "0.0.3", "minzoom": 1, "maxzoom": 2, "tiles": {"9": ["a"]}})
    )
    assert_clean_error(run("upload", str(bad), str(tmp_path / "out.json")), "invalid quadkey")
    assert not (tmp_path / "out.json").exists()


# ---------------------------------------------------------------------------- literal messages
def run_without(module: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a process where `module` cannot be imported (an extra not installed)."""
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        "from lambda_handler.cli import main\n"
        f"sys.argv = ['mosaic-tiler', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("name", ["data[/b].json", "x[gcs].json", "[red]y[/red].json", "z].json"])
def test_error_messages_are_printed_literally(name, tmp_path):
    result = run("info", str(tmp_path / name))
    assert_clean_error(result, f"mosaic file not found: {tmp_path / name}")
    assert "MarkupError" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("module", "uri", "command"),
    [
        ("google.cloud.storage", "gs://bucket/x.json", 'pip install "lambda-mosaic-tiler[gcs]"'),
        (
            "azure.storage.blob",
            "az://account.blob.core.windows.net/mosaics/x.json",
            'pip install "lambda-mosaic-tiler[azure]"',
        ),
    ],
)
def test_install_hints_keep_their_brackets(module, uri, command):
    result = run_without(module, "info", uri)
    assert_clean_error(result, command)


def test_success_messages_are_printed_literally(sample_cogs, tmp_path):
    target = tmp_path / "out[/x][b].json"  # a folder "out[" holding "x][b].json"
    target.parent.mkdir()
    result = run("create", sample_cogs[0], "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert f"to {target}" in result.stderr
    assert target.is_file()


def test_existing_mosaic_names_the_overwrite_flag(sample_cogs, tmp_path):
    target = tmp_path / "mosaic.json"
    assert run("create", sample_cogs[0], "--output", str(target)).returncode == 0
    again = run("create", sample_cogs[1], "--output", str(target))
    assert_clean_error(again, "already exists", "--overwrite")
    assert "overwrite=True" not in again.stderr
    replaced = run("create", sample_cogs[1], "--output", str(target), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(target.read_text())["tiles"]


def test_skip_errors_reports_each_skipped_dataset_once(sample_cogs, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_text("not a GeoTIFF")
    missing = tmp_path / "missing.tif"
    result = run("create", sample_cogs[0], str(broken), str(missing), "--skip-errors")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tiles"]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert sum(str(broken) in line for line in lines) == 1
    assert sum(str(missing) in line for line in lines) == 1
    assert all(line.startswith("warning: skipped unreadable dataset") for line in lines)
    assert "UserWarning" not in result.stderr and "builder.py" not in result.stderr


# ---------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def export_mosaic_uri(sample_cogs, tmp_path_factory) -> str:
    """The sample scenes as a mosaic with zooms 8-13 (many tiles to render at zoom 13)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('export') / 'store.db'}:scenes"
    created = run("create", *sample_cogs, "--minzoom", "8", "--maxzoom", "13", "-o", uri)
    assert created.returncode == 0, created.stderr
    return uri


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing directory", "output directory does not exist"),
        ("directory", "output is a directory"),
        ("profile", "unknown COG profile"),
        ("rio-cogeo", "exports need rio-cogeo"),
    ],
)
def test_export_checks_before_rendering(case, fragment, export_mosaic_uri, tmp_path):
    output = tmp_path / "out.tif"
    extra: list[str] = []
    if case == "missing directory":
        output = tmp_path / "no" / "such" / "out.tif"
    elif case == "directory":
        output = tmp_path / "a-folder"
        output.mkdir()
    elif case == "profile":
        extra = ["--cog-profile", "no-such-profile"]
    args = ["export", str(output), "--uri", export_mosaic_uri, "--zoom", "9"]
    args += ["--bbox", "-78.6,45.0,-78.2,45.4", *extra]
    result = run_without("rio_cogeo", *args) if case == "rio-cogeo" else run(*args)
    assert_clean_error(result, fragment)
    # nothing was rendered: no tile store next to the output
    assert not list(tmp_path.rglob("*.tiles"))


@pytest.mark.parametrize(
    ("rescale", "fragment"),
    [("a,b", "expected 'min,max', got 'a,b'"), ("0,inf", "range must be finite")],
)
def test_export_rescale_is_parsed_as_the_api_parses_it(rescale, fragment, tmp_path):
    """--rescale goes through the API's parser (same ranges, same messages), before anything
    is opened or rendered."""
    args = ["export", str(tmp_path / "out.tif"), "--uri", str(tmp_path / "none.json")]
    result = run(*args, "--zoom", "9", "--bbox", "-78.6,45.0,-78.2,45.4", "--rescale", rescale)
    assert_clean_error(result, f"invalid --rescale: {fragment}")
    assert not list(tmp_path.rglob("*.tiles"))


def test_export_ctrl_c_prints_one_line_and_keeps_tiles(export_mosaic_uri, tmp_path):
    """Ctrl-C reaches the whole process group, as from a terminal; then run it again."""
    import os
    import signal
    import time

    output = tmp_path / "area.tif"
    args = [sys.executable, "-m", "lambda_handler.cli", "export", str(output)]
    args += ["--uri", export_mosaic_uri, "--zoom", "13", "--bbox", "-78.5,45.0,-78.2,45.3"]
    args += ["--concurrency", "2"]
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as in a terminal: a test runner started in the background may pass SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    tiles = tmp_path / "area.tif.tiles"

    def finished() -> int:
        return len(list(tiles.glob("13-*-*.*"))) if tiles.is_dir() else 0

    try:
        deadline = time.monotonic() + 120
        while finished() < 5:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no tile was finished in 120 s"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout and "KeyboardInterrupt" not in stderr
    messages = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(messages) == 1 and f"{output}.tiles/" in messages[0], stderr
    kept = finished()
    assert kept >= 5 and not output.exists()

    resumed = run(*args[3:])
    assert resumed.returncode == 0, resumed.stderr
    reused = int(resumed.stderr.split(" kept from an earlier run")[0].split()[-1])
    assert reused >= kept, resumed.stderr
    assert output.is_file()


# ---------------------------------------------------------------------------- demo
def test_demo_on_a_taken_port_fails_before_touching_anything(tmp_path):
    import socket

    workdir = tmp_path / "demo"
    workdir.mkdir()
    store = workdir / "mosaics.db"
    store.write_bytes(b"an earlier demo store")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("demo", "--port", str(port), "--workdir", str(workdir))
        served = run("serve", "--port", str(port), cwd=tmp_path)
    assert_clean_error(result, f"cannot listen on 127.0.0.1:{port}: port already in use")
    assert "ready" not in result.stdout and "Demo data" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    assert store.read_bytes() == b"an earlier demo store"
    assert [p.name for p in workdir.iterdir()] == ["mosaics.db"]
    assert_clean_error(served, "port already in use", "--port")
    assert len(served.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("with_shared_fixtures", [True, False])
def test_demo_serves_its_own_data_with_or_without_shared_fixtures(
    with_shared_fixtures, tmp_path, sample_cogs_uint16
):
    """The README's examples are about the generated scenes: a `../shared/fixtures` folder
    beside the project changes nothing, and the demo says which data it serves."""
    import shutil

    import httpx

    from tests.processes import free_port
    from tests.terminal import assert_clean_stop, environment, start_server

    project = tmp_path / "project"
    project.mkdir()
    if with_shared_fixtures:
        shared = tmp_path / "shared" / "fixtures"
        shared.mkdir(parents=True)
        for name, source in zip(("cog1.tif", "cog2.tif"), sample_cogs_uint16, strict=False):
            shutil.copy(source, shared / name)
    port = free_port()
    command = f"{sys.executable} -m lambda_handler.cli demo --port {port}"
    server = start_server(command, project, environment(project))
    try:
        server.wait_for(r"Demo mosaic ready: open http://127\.0\.0\.1:\d+/mosaics/demo/map$")
        base = f"http://127.0.0.1:{port}/mosaics/demo"
        assert httpx.get(f"{base}/point/-78.4,45.2", timeout=30).status_code == 200
        tile = httpx.get(f"{base}/tiles/WebMercatorQuad/9/144/183.png", timeout=30)
        assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
    finally:
        code = server.interrupt()
    assert_clean_stop(code, server)
    said = f"Demo data: 4 generated 8-bit RGB scenes around 78W 45N ({project.resolve()}/demo/cogs/"
    assert said in "".join(server.output)
    assert sorted(p.name for p in (project / "demo" / "cogs").iterdir()) == [
        f"scene_{s}_uint8.tif" for s in "abcd"
    ]


def test_demo_with_given_cogs_says_so(tmp_path, sample_cogs_uint16):
    from lambda_handler.server import demo_data, prepare_demo

    paths, description = demo_data(tmp_path, sample_cogs_uint16[:2])
    assert paths == sample_cogs_uint16[:2]
    assert description.startswith("2 COGs given with --cogs (") and paths[0] in description
    _, map_path = prepare_demo(tmp_path / "work", cogs=sample_cogs_uint16[:2])
    assert "?rescale=" in map_path  # 16-bit data: the map gets a display range
    missing = run("demo", "--cogs", "/no/such[/b].tif", "--port", "0", "--workdir", str(tmp_path))
    assert_clean_error(missing, "COG not found: /no/such[/b].tif")
