"""cogeo-mosaic's module name for the Google Cloud Storage backend (`backends.gs`)."""

from lambda_handler.backends.gcs import GCSBackend

__all__ = ["GCSBackend"]
