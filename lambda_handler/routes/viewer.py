"""The map page: a Leaflet map (vendored under lambda_handler/static) of one mosaic."""

import html
import json
from functools import lru_cache
from pathlib import Path
from string import Template

from fastapi import Request

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "templates" / "map.html"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


@lru_cache(maxsize=1)
def _template() -> Template:
    return Template(TEMPLATE_PATH.read_text(encoding="utf-8"))


def map_page(request: Request, title: str, tilejson_url: str) -> str:
    """HTML of the map page for the mosaic whose TileJSON is at `tilejson_url`."""
    static = str(request.url_for("static", path="")).rstrip("/")
    return _template().substitute(
        title=html.escape(title),
        static=html.escape(static, quote=True),
        # JSON (with '<' escaped) is a safe JavaScript string literal inside <script>.
        tilejson_url=json.dumps(tilejson_url).replace("<", "\\u003c"),
    )
