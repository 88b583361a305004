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
        (("create", "/no/such.tif"), ["Could not read 1 dataset", "/no/such.tif"]),
        (("create",), ["give COG paths"]),
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
