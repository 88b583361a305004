"""MosaicJSON model and builder."""

from lambda_handler.mosaic.builder import default_accessor, from_features, from_urls, get_footprints
from lambda_handler.mosaic.model import MosaicJSON

__all__ = ["MosaicJSON", "default_accessor", "from_features", "from_urls", "get_footprints"]
