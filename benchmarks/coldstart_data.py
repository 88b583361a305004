"""The data bench_coldstart.py serves: a mosaic of generated COGs per tile (so no tile of a run
finds another's document or COG headers cached), as local files or on a moto S3 server."""

from __future__ import annotations

from pathlib import Path

TILE_ZOOM = 10
ZOOM_RANGE = (7, 12)
OVERLAP = (-78.15, 45.40)  # scenes a, b and c of lambda_handler.sample_data overlap here


def tile_set(count: int = 5) -> list[tuple[int, int, int]]:
    """`count` z10 tiles around the scenes' overlap (each reads one to three scenes)."""
    import morecantile

    centre = morecantile.tms.get("WebMercatorQuad").tile(*OVERLAP, TILE_ZOOM)
    offsets = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1)]
    return [(TILE_ZOOM, centre.x + dx, centre.y + dy) for dx, dy in offsets[:count]]


def make_mosaics(directory: Path, s3: dict | None, count: int) -> dict[str, dict[str, str]]:
    """`count` mosaics of the scenes, each over its own copy of the COGs, on files and (with
    `s3`) on the stand-in. Each tile of a run reads its own mosaic: the warm tiles find the
    process warm but no mosaic document, asset list or COG header cached, like the first.

    Returns, per store, each app's location of mosaic `{i}`: ours a URI template of the id
    `mosaic{i}`, the peer's a `?url=` with `{i}` to fill.
    """
    import shutil

    from lambda_handler.mosaic.builder import from_urls
    from lambda_handler.sample_data import generate_scenes

    scenes = generate_scenes(directory / "scenes")
    document = from_urls(scenes, minzoom=ZOOM_RANGE[0], maxzoom=ZOOM_RANGE[1])
    client = None
    if s3 is not None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=s3["endpoint"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="bench")
    for index in range(count):
        copies, on_s3 = {}, {}
        (directory / f"cogs{index}").mkdir()
        for path in scenes:
            copy = directory / f"cogs{index}" / Path(path).name
            shutil.copyfile(path, copy)
            copies[path] = str(copy)
            if client is not None:
                key = f"cogs{index}/{Path(path).name}"
                client.upload_file(path, "bench", key)
                on_s3[path] = f"s3://bench/{key}"
        for where, names in (("file", copies), ("s3", on_s3)):
            if not names:
                continue
            body = document.model_copy(
                update={"tiles": {q: [names[a] for a in v] for q, v in document.tiles.items()}}
            ).model_dump_json(exclude_none=True)
            if where == "file":
                (directory / f"mosaic{index}.json").write_text(body)
            else:
                client.put_object(Bucket="bench", Key=f"mosaic{index}.json", Body=body)
    stores = {
        "file": {
            "ours": f"file://{directory}/{{mosaic_id}}.json",
            "peer": str(directory / "mosaic{i}.json"),
        },
    }
    if client is not None:
        stores["s3"] = {"ours": "s3://bench/{mosaic_id}.json", "peer": "s3://bench/mosaic{i}.json"}
    return stores


def start_moto(directory: Path) -> tuple[object, dict[str, str]]:
    """A moto server on 127.0.0.1 and the variables pointing boto3 and GDAL at it."""
    from tests.servers_aws import moto_command, start_server

    server = start_server("moto", moto_command, directory)
    return server, {**server.boto3_env(), **server.gdal_env()}
