"""Local server: `mosaic-tiler serve` (the API on uvicorn) and `mosaic-tiler demo`."""

import errno
import socket
from pathlib import Path
from urllib.parse import quote

from lambda_handler.settings import ApiSettings


class PortUnavailableError(Exception):
    """The address to listen on cannot be bound (taken, or not an address of this machine)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, bound before anything else happens, so that a taken
    port fails at once (and uvicorn serves on this very socket: no gap for another process)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise PortUnavailableError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        reason = "port already in use" if err.errno == errno.EADDRINUSE else err.strerror
        raise PortUnavailableError(
            f"cannot listen on {host}:{port}: {reason} (choose another with --port)"
        ) from err
    return sock


def _run(settings: ApiSettings, sock: socket.socket) -> None:
    import uvicorn

    from lambda_handler.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def serve(host: str = "127.0.0.1", port: int = 8000, store: str | None = None) -> None:
    """Serve the API; mosaics live where `store` (a URI template with `{mosaic_id}`) says,
    by default in the SQLite file `./mosaics.db`. Other settings come from MOSAIC_API_*."""
    sock = bind(host, port)
    overrides = {"mosaic_uri_template": store} if store else {}
    _run(ApiSettings(**overrides), sock)


def demo_data(workdir: Path, cogs: list[str] | None = None) -> tuple[list[str], str]:
    """The demo's COGs and a sentence saying what they are: the given `cogs`, or small
    generated scenes written under `workdir/cogs` (the data the README's examples use)."""
    if cogs:
        missing = [path for path in cogs if not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"COG not found: {', '.join(missing)}")
        paths = [str(Path(path).resolve()) for path in cogs]
        return paths, f"{len(paths)} COGs given with --cogs ({', '.join(paths)})"
    from lambda_handler.sample_data import SCENES, generate_scenes

    paths = generate_scenes(workdir / "cogs")
    return paths, (
        f"{len(SCENES)} generated 8-bit RGB scenes around 78W 45N "
        f"({workdir / 'cogs'}/scene_*_uint8.tif)"
    )


def prepare_demo(
    workdir: Path | str, mosaic_id: str = "demo", cogs: list[str] | None = None
) -> tuple[ApiSettings, str]:
    """Build the demo mosaic in `workdir/mosaics.db`: (settings, map path with its query)."""
    settings, map_path, _ = _prepare(Path(workdir), mosaic_id, cogs)
    return settings, map_path


def _prepare(workdir: Path, mosaic_id: str, cogs: list[str] | None) -> tuple[ApiSettings, str, str]:
    from lambda_handler.backends import MosaicBackend
    from lambda_handler.mosaic.builder import from_urls

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    paths, description = demo_data(workdir, cogs)
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
    return settings, map_path, description


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


def demo(
    host: str = "127.0.0.1",
    port: int = 8000,
    workdir: Path | str = "demo",
    cogs: list[str] | None = None,
) -> None:
    """Create a demo mosaic from generated COGs (or the given ones), say which data it used,
    print its map URL and serve it. The port is bound first: a taken port fails before the
    demo store is touched."""
    sock = bind(host, port)
    try:
        settings, map_path, description = _prepare(Path(workdir), "demo", cogs)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]  # the real one when asked for port 0
    print(f"Demo data: {description}", flush=True)
    print(f"Demo mosaic ready: open http://{host}:{port}{map_path}", flush=True)
    _run(settings, sock)
