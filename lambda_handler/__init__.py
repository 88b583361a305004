"""lambda-mosaic-tiler: a serverless tiler for mosaics of Cloud-Optimized GeoTIFFs."""

__version__ = "0.1.0"
