"""Local server: `mosaic-tiler serve` (the API on uvicorn) and `mosaic-tiler demo`."""

from pathlib import Path
from urllib.parse import quote

from lambda_handler.settings import ApiSettings

# Real-world COGs of the shared fixtures folder used by the demo when it is there.
FIXTURE_COGS = ("cog1.tif", "cog2.tif")


def _run(settings: ApiSettings, host: str, port: int) -> None:
    import uvicorn

    from lambda_handler.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def serve(host: str = "127.0.0.1", port: int = 8000, store: str | None = None) -> None:
    """Serve the API; mosaics live where `store` (a URI template with `{mosaic_id}`) says,
    by default in the SQLite file `./mosaics.db`. Other settings come from MOSAIC_API_*."""
    overrides = {"mosaic_uri_template": store} if store else {}
    _run(ApiSettings(**overrides), host, port)


def shared_fixture_cogs() -> list[str]:
    """The shared fixtures' COGs (`../shared/fixtures` of the project or of the current
    directory), or [] when the folder is absent."""
    candidates = [
        Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures",
        Path.cwd().parent / "shared" / "fixtures",
    ]
    for folder in candidates:
        paths = [folder / name for name in FIXTURE_COGS]
        if all(p.is_file() for p in paths):
            return [str(p) for p in paths]
    return []


def _display_range(paths: list[str]) -> tuple[float, float] | None:
    """A min/max range (2nd-98th percentiles) for non-8-bit data, None for 8-bit."""
    from rio_tiler.io import Reader

    lows, highs = [], []
    for path in paths:
        with Reader(path) as src:
            if src.dataset.dtypes[0] == "uint8":
                return None
            for stats in src.statistics(max_size=256).values():
                lows.append(stats.percentile_2)
                highs.append(stats.percentile_98)
    return min(lows), max(highs)


def prepare_demo(workdir: Path | str, mosaic_id: str = "demo") -> tuple[ApiSettings, str]:
    """Build the demo mosaic in `workdir/mosaics.db`: (settings, map path with its query)."""
    from lambda_handler.backends import MosaicBackend
    from lambda_handler.mosaic.builder import from_urls
    from lambda_handler.sample_data import generate_scenes

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    paths = shared_fixture_cogs() or generate_scenes(workdir / "cogs")
    document = from_urls(paths, name=mosaic_id)
    template = f"sqlite:///{workdir / 'mosaics.db'}:{{mosaic_id}}"
    settings = ApiSettings(mosaic_uri_template=template)
    backend = MosaicBackend(template.replace("{mosaic_id}", mosaic_id), mosaic_def=document)
    try:
        backend.write(overwrite=True)
    finally:
        backend.close()
    map_path = f"/mosaics/{quote(mosaic_id)}/map"
    display = _display_range(paths)
    if display:
        map_path += f"?rescale={display[0]:g},{display[1]:g}"
    return settings, map_path


def demo(host: str = "127.0.0.1", port: int = 8000, workdir: Path | str = "demo") -> None:
    """Create a demo mosaic from generated COGs (or the shared fixtures), print its map URL
    and serve it."""
    settings, map_path = prepare_demo(workdir)
    print(f"Demo mosaic ready: open http://{host}:{port}{map_path}", flush=True)
    _run(settings, host, port)
