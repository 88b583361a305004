"""OGC WMTS 1.0.0 capabilities document (RESTful binding) for one mosaic in one TMS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from morecantile import TileMatrixSet


def _crs_uri(tms: TileMatrixSet) -> str:
    srs = getattr(tms.crs, "srs", None)
    if isinstance(srs, str) and srs:
        return srs
    from rio_tiler.utils import CRS_to_uri

    return CRS_to_uri(tms.rasterio_crs) or tms.rasterio_crs.to_string()


def _matrix(tms: TileMatrixSet, zoom: int) -> str:
    matrix = tms.matrix(zoom)
    first, second = matrix.pointOfOrigin
    return (
        "<TileMatrix>"
        f"<ows:Identifier>{escape(str(matrix.id))}</ows:Identifier>"
        f"<ScaleDenominator>{matrix.scaleDenominator!r}</ScaleDenominator>"
        f"<TopLeftCorner>{first!r} {second!r}</TopLeftCorner>"
        f"<TileWidth>{matrix.tileWidth}</TileWidth>"
        f"<TileHeight>{matrix.tileHeight}</TileHeight>"
        f"<MatrixWidth>{matrix.matrixWidth}</MatrixWidth>"
        f"<MatrixHeight>{matrix.matrixHeight}</MatrixHeight>"
        "</TileMatrix>"
    )


def capabilities(
    title: str,
    layer: str,
    bounds: Sequence[float],
    tms: TileMatrixSet,
    minzoom: int,
    maxzoom: int,
    media_type: str,
    resource_url: str,
    self_url: str,
) -> str:
    """The XML text; `resource_url` holds {TileMatrix}, {TileCol} and {TileRow}."""
    west, south, east, north = bounds
    zooms = range(max(minzoom, tms.minzoom), max(minzoom, tms.minzoom, maxzoom) + 1)
    matrices = "".join(_matrix(tms, z) for z in zooms)
    fmt = media_type.split(";")[0]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Capabilities xmlns="http://www.opengis.net/wmts/1.0" '
        'xmlns:ows="http://www.opengis.net/ows/1.1" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:gml="http://www.opengis.net/gml" '
        'xsi:schemaLocation="http://www.opengis.net/wmts/1.0 '
        'http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd" '
        'version="1.0.0">'
        "<ows:ServiceIdentification>"
        f"<ows:Title>{escape(title)}</ows:Title>"
        "<ows:ServiceType>OGC WMTS</ows:ServiceType>"
        "<ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>"
        "</ows:ServiceIdentification>"
        '<ows:OperationsMetadata><ows:Operation name="GetCapabilities"><ows:DCP><ows:HTTP>'
        f'<ows:Get xlink:href={quoteattr(self_url)}><ows:Constraint name="GetEncoding">'
        "<ows:AllowedValues><ows:Value>RESTful</ows:Value></ows:AllowedValues>"
        "</ows:Constraint></ows:Get></ows:HTTP></ows:DCP></ows:Operation>"
        "</ows:OperationsMetadata>"
        "<Contents><Layer>"
        f"<ows:Title>{escape(title)}</ows:Title>"
        f"<ows:Identifier>{escape(layer)}</ows:Identifier>"
        '<ows:WGS84BoundingBox crs="urn:ogc:def:crs:OGC:2:84">'
        f"<ows:LowerCorner>{west!r} {south!r}</ows:LowerCorner>"
        f"<ows:UpperCorner>{east!r} {north!r}</ows:UpperCorner>"
        "</ows:WGS84BoundingBox>"
        '<Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>'
        f"<Format>{escape(fmt)}</Format>"
        f"<TileMatrixSetLink><TileMatrixSet>{escape(tms.id)}</TileMatrixSet></TileMatrixSetLink>"
        f'<ResourceURL format={quoteattr(fmt)} resourceType="tile" '
        f"template={quoteattr(resource_url)}/>"
        "</Layer>"
        "<TileMatrixSet>"
        f"<ows:Identifier>{escape(tms.id)}</ows:Identifier>"
        f"<ows:SupportedCRS>{escape(_crs_uri(tms))}</ows:SupportedCRS>"
        f"{matrices}"
        "</TileMatrixSet>"
        "</Contents>"
        f"<ServiceMetadataURL xlink:href={quoteattr(self_url)}/>"
        "</Capabilities>"
    )
