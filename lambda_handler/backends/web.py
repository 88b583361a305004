"""cogeo-mosaic's module name for the HTTP(S) backend (`backends.web`)."""

from lambda_handler.backends.http import HttpBackend

__all__ = ["HttpBackend"]
