"""OGC WMTS 1.0.0 capabilities document (RESTful binding) for one mosaic in one TMS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from morecantile import TileMatrixSet


def crs_uri(tms: TileMatrixSet) -> str:
    """The CRS URI of a TileMatrixSet."""
    srs = getattr(tms.crs, "srs", None)
    if isinstance(srs, str) and srs:
        return srs
    from rio_tiler.utils import CRS_to_uri

    return CRS_to_uri(tms.rasterio_crs) or tms.rasterio_crs.to_string()


def _operation(name: str, href: str) -> str:
    return (
        f'<ows:Operation name="{name}"><ows:DCP><ows:HTTP>'
        f'<ows:Get xlink:href={quoteattr(href)}><ows:Constraint name="GetEncoding">'
        "<ows:AllowedValues><ows:Value>RESTful</ows:Value></ows:AllowedValues>"
        "</ows:Constraint></ows:Get></ows:HTTP></ows:DCP></ows:Operation>"
    )


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


def matrix_limits(tms: TileMatrixSet, zooms: range, bounds: Sequence[float]) -> list[dict]:
    """Per zoom, the rows and columns of the tiles holding `bounds` (geographic): OGC's
    TileMatrixSetLimits (empty when the TMS's projection cannot hold the bounds)."""
    import math

    from pyproj import Transformer

    west, south, east, north = bounds
    to_tms = Transformer.from_crs(tms.geographic_crs, tms.crs._pyproj_crs, always_xy=True)
    try:
        left, bottom, right, top = to_tms.transform_bounds(west, south, east, north, 21)
    except Exception:  # a projection that cannot hold the bounds: no limits, the whole matrix
        return []
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        return []
    limits = []
    for zoom in zooms:
        matrix = tms.matrix(zoom)
        origin_x, origin_y = tms._matrix_origin(matrix)
        span_x = matrix.cellSize * matrix.tileWidth
        span_y = matrix.cellSize * matrix.tileHeight
        top_left = matrix.cornerOfOrigin != "bottomLeft"

        def clamp(value: float, size: int) -> int:
            return min(max(int(math.floor(value)), 0), size - 1)

        col_min = clamp((left - origin_x) / span_x, matrix.matrixWidth)
        col_max = clamp((right - origin_x) / span_x - 1e-9, matrix.matrixWidth)
        if top_left:
            row_min = clamp((origin_y - top) / span_y, matrix.matrixHeight)
            row_max = clamp((origin_y - bottom) / span_y - 1e-9, matrix.matrixHeight)
        else:
            row_min = clamp((bottom - origin_y) / span_y, matrix.matrixHeight)
            row_max = clamp((top - origin_y) / span_y - 1e-9, matrix.matrixHeight)
        limits.append(
            {
                "tileMatrix": str(matrix.id),
                "minTileRow": row_min,
                "maxTileRow": row_max,
                "minTileCol": col_min,
                "maxTileCol": col_max,
            }
        )
    return limits


def _limits(tms: TileMatrixSet, zooms: range, bounds: Sequence[float]) -> str:
    """TileMatrixSetLimits XML, so clients do not ask for tiles outside the layer."""
    parts = [
        "<TileMatrixLimits>"
        f"<TileMatrix>{escape(limit['tileMatrix'])}</TileMatrix>"
        f"<MinTileRow>{limit['minTileRow']}</MinTileRow>"
        f"<MaxTileRow>{limit['maxTileRow']}</MaxTileRow>"
        f"<MinTileCol>{limit['minTileCol']}</MinTileCol>"
        f"<MaxTileCol>{limit['maxTileCol']}</MaxTileCol>"
        "</TileMatrixLimits>"
        for limit in matrix_limits(tms, zooms, bounds)
    ]
    return f"<TileMatrixSetLimits>{''.join(parts)}</TileMatrixSetLimits>" if parts else ""


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
    others: Sequence[tuple[TileMatrixSet, int, int]] = (),
) -> str:
    """The XML text; `resource_url` holds {TileMatrix}, {TileCol} and {TileRow} (and
    {TileMatrixSet} when `others` lists more TileMatrixSets, with their zooms: the document
    then offers every one, the requested `tms` first, as titiler's does)."""
    west, south, east, north = bounds
    zooms = range(max(minzoom, tms.minzoom), max(minzoom, tms.minzoom, maxzoom) + 1)
    sets = [(tms, zooms)] + [
        (other, range(max(low, other.minzoom), max(low, other.minzoom, high) + 1))
        for other, low, high in others
        if other.id != tms.id
    ]
    links = "".join(
        f"<TileMatrixSetLink><TileMatrixSet>{escape(t.id)}</TileMatrixSet>"
        f"{_limits(t, z, bounds)}</TileMatrixSetLink>"
        for t, z in sets
    )
    matrix_sets = "".join(
        "<TileMatrixSet>"
        f"<ows:Identifier>{escape(t.id)}</ows:Identifier>"
        f"<ows:SupportedCRS>{escape(crs_uri(t))}</ows:SupportedCRS>"
        f"{''.join(_matrix(t, level) for level in z)}"
        "</TileMatrixSet>"
        for t, z in sets
    )
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
        # ServiceProvider and a RESTful GetTile operation: OWSLib's gettile() needs the
        # operation declared, as titiler's document does.
        "<ows:ServiceProvider><ows:ProviderName>lambda-mosaic-tiler</ows:ProviderName>"
        "</ows:ServiceProvider>"
        "<ows:OperationsMetadata>"
        f"{_operation('GetCapabilities', self_url)}"
        f"{_operation('GetTile', resource_url.split('{')[0])}"
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
        f"{links}"
        f'<ResourceURL format={quoteattr(fmt)} resourceType="tile" '
        f"template={quoteattr(resource_url)}/>"
        "</Layer>"
        f"{matrix_sets}"
        "</Contents>"
        f"<ServiceMetadataURL xlink:href={quoteattr(self_url)}/>"
        "</Capabilities>"
    )


def resource_url(tile_url: str, tms_id: str) -> str:
    """The WMTS ResourceURL template of a tile URL template of TMS `tms_id` (`{z}/{x}/{y}`
    become WMTS's names, the TMS becomes `{TileMatrixSet}`)."""
    return (
        tile_url.replace("{z}", "{TileMatrix}")
        .replace("{x}", "{TileCol}")
        .replace("{y}", "{TileRow}")
        .replace(f"/tiles/{tms_id}/", "/tiles/{TileMatrixSet}/")
    )
