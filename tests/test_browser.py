"""A real browser (Debian's chromium, driven by Playwright) draws the mosaic on the map page."""

from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright
from rasterio.io import MemoryFile

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Headless chromium (the Debian package; `.ci/run` installs it)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def screenshot_pixels(png: bytes) -> np.ndarray:
    """(height, width, 3) RGB array of a PNG screenshot."""
    with MemoryFile(png) as memfile, memfile.open() as dataset:
        return np.moveaxis(dataset.read()[:3], 0, -1).astype(int)


def test_map_page_draws_the_mosaic(browser, api_server):
    page = browser.new_page(viewport={"width": 800, "height": 600})
    tile_statuses: list[int] = []
    page.on(
        "response",
        lambda response: (
            tile_statuses.append(response.status) if "/tiles/" in response.url else None
        ),
    )
    offline = []  # every request must stay on our server: the map library is served by it
    page.on(
        "request",
        lambda request: (
            offline.append(request.url)
            if not request.url.startswith(api_server) and not request.url.startswith("data:")
            else None
        ),
    )
    page.goto(f"{api_server}/mosaics/scenes/map?tile_format=png")
    page.wait_for_function("document.body.dataset.tilesLoaded === 'true'", timeout=60_000)
    # Leaflet fades tiles in (0.2 s CSS transition): wait until every tile is fully opaque.
    page.wait_for_function(
        "[...document.querySelectorAll('img.leaflet-tile-loaded')]"
        ".every((img) => getComputedStyle(img).opacity === '1')",
        timeout=30_000,
    )
    page.wait_for_timeout(300)
    info = page.inner_text("#info")
    pixels = screenshot_pixels(page.screenshot())
    page.close()

    assert offline == []
    assert tile_statuses and all(status in (200, 204) for status in tile_statuses)
    assert tile_statuses.count(200) >= 2
    assert "scenes" in info and "tiles 8" in info
    # Scene pixels are (v, v + 1, v + 2) with v = 41..175 (see sample_data.scene_value):
    # a signature no page background, control or text colour has.
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    mosaic = (green - red == 1) & (blue - red == 2) & (red >= 41) & (red <= 175)
    share = mosaic.mean()
    assert share > 0.2, f"only {share:.1%} of the screenshot shows mosaic pixels"
    scene_bases = {int(v) // 40 for v in np.unique(red[mosaic])}
    assert len(scene_bases) >= 3  # several scenes are drawn, not one tile repeated
