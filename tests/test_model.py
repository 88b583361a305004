"""MosaicJSON model: spec versions, validation messages, helpers."""

import json

import morecantile
import pytest

from lambda_handler.errors import InvalidMosaicError
from lambda_handler.mosaic.model import MosaicJSON


def document(**overrides):
    base = {
        "mosaicjson": "0.0.3",
        "minzoom": 7,
        "maxzoom": 9,
        "quadkey_zoom": 7,
        "bounds": [-76.0, 44.9, -71.3, 47.1],
        "tiles": {"0302300": ["cog1.tif"], "0302301": ["cog1.tif", "cog2.tif"]},
    }
    base.update(overrides)
    return base


def test_valid_document_gets_a_center_and_keeps_extra_fields():
    mosaic = MosaicJSON.parse(document(vendor_field={"a": 1}))
    assert mosaic.center == pytest.approx(((-76.0 + -71.3) / 2, (44.9 + 47.1) / 2, 7))
    assert json.loads(mosaic.to_json())["vendor_field"] == {"a": 1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mosaicjson": "0.0.9"}, "unsupported MosaicJSON spec version '0.0.9'"),
        ({"version": "one"}, "invalid document version 'one'"),
        ({"tiles": {"0302309": ["a.tif"]}}, "invalid quadkey"),
        ({"tiles": {"030230": ["a.tif"]}}, "of length 7"),
        (
            {"minzoom": 10, "maxzoom": 9, "quadkey_zoom": None},
            "minzoom (10) is greater than maxzoom (9)",
        ),
        ({"quadkey_zoom": 12}, "quadkey_zoom (12) must lie between minzoom (7) and maxzoom (9)"),
        ({"bounds": [10, 0, -10, 5]}, "not ordered"),
        ({"tilematrixset": "WorldCRS84Quad"}, "is not a quadtree"),
        ({"tilematrixset": "NoSuchTMS"}, "unknown TileMatrixSet"),
        ({"minzoom": 31}, "minzoom"),
    ],
)
def test_invalid_documents_name_the_problem(overrides, message):
    with pytest.raises(InvalidMosaicError) as info:
        MosaicJSON.parse(document(**overrides))
    assert message in str(info.value)


def test_malformed_json_and_non_mosaic_documents():
    with pytest.raises(InvalidMosaicError, match="not valid JSON"):
        MosaicJSON.parse(b"{not json", source="broken.json")
    with pytest.raises(InvalidMosaicError, match="no 'mosaicjson'"):
        MosaicJSON.parse({"type": "FeatureCollection"})
    with pytest.raises(InvalidMosaicError, match="not a JSON object"):
        MosaicJSON.parse("[1, 2]")


def test_quadkey_zoom_defaults_to_minzoom_for_old_documents():
    mosaic = MosaicJSON.parse(document(mosaicjson="0.0.1", quadkey_zoom=None))
    assert mosaic.index_zoom == 7


def test_quadtree_tms_is_kept_and_serialized():
    tms = morecantile.tms.get("WorldMercatorWGS84Quad")
    mosaic = MosaicJSON.parse(document(tilematrixset=tms.model_dump(mode="json")))
    assert mosaic.tms.id == "WorldMercatorWGS84Quad"
    again = MosaicJSON.parse(mosaic.to_json())
    assert again.tms.id == "WorldMercatorWGS84Quad"


def test_bump_version_increases_last_number():
    mosaic = MosaicJSON.parse(document(version="1.0.9"))
    mosaic.bump_version()
    assert mosaic.version == "1.0.10"


def test_real_cogeo_mosaic_documents_read(shared_fixtures):
    for name in ("mosaic.json", "mosaic_0.0.1.json"):
        data = json.loads((shared_fixtures / name).read_text())
        mosaic = MosaicJSON.parse(data)
        assert mosaic.tiles == data["tiles"]
        assert mosaic.index_zoom == 7


# ---------------------------------------------------------------------------- cogeo-mosaic API
def test_assignment_is_validated():
    from pydantic import ValidationError

    mosaic = MosaicJSON(mosaicjson="0.0.3", minzoom=3, maxzoom=5, tiles={})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        mosaic.minzoom = -1
    with pytest.raises(ValidationError, match="greater than maxzoom"):
        mosaic.minzoom = 9
    assert mosaic.minzoom == 3
    mosaic.maxzoom = 7
    assert mosaic.maxzoom == 7


def test_empty_tiles_list_is_an_empty_index():
    """cogeo-mosaic's dynamic-backend recipe writes `tiles=[]`."""
    mosaic = MosaicJSON(mosaicjson="0.0.2", name="fake", minzoom=8, maxzoom=12, tiles=[])
    assert mosaic.tiles == {}
    with pytest.raises(ValueError):
        MosaicJSON(mosaicjson="0.0.2", tiles=["0"])


def test_invalid_documents_raise_pydantic_validation_errors_too():
    """`except ValidationError` (cogeo-mosaic raises pydantic's) and `except ValueError` still
    catch the project's typed error, whose text names the field."""
    from pydantic import ValidationError

    from lambda_handler.errors import InvalidMosaicDocumentError

    with pytest.raises(ValidationError) as info:
        MosaicJSON.parse({"mosaicjson": "0.0.3", "minzoom": 31, "tiles": {}})
    error = info.value
    assert isinstance(error, InvalidMosaicDocumentError)
    assert isinstance(error, InvalidMosaicError) and isinstance(error, ValueError)
    assert "minzoom" in str(error) and str(error).startswith("invalid MosaicJSON in document")
    assert error.errors()[0]["loc"] == ("minzoom",)
    # Malformed JSON is not a model error: a plain InvalidMosaicError (a ValueError).
    with pytest.raises(InvalidMosaicError) as info:
        MosaicJSON.parse("{not json")
    assert not isinstance(info.value, ValidationError)
