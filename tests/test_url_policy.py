"""URL allow-lists compare parsed URLs (scheme, host, port, decoded path segments), and some
forms are refused whatever the list says: link-local (instance metadata) hosts, credentials in
the URL, GDAL virtual paths, '..' segments."""

import pytest

from lambda_handler.url_policy import UrlNotAllowed, check_url, is_allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://good.example/data/a.tif", True),
        ("HTTP://GOOD.EXAMPLE:80/data/a.tif", True),
        ("http://good.example@169.254.169.254/latest/meta-data/", False),
        ("http://good.example:8080/data/a.tif", False),
        ("http://good.example.evil.test/data/a.tif", False),
        ("http://good.example/data/%2e%2e/secret.tif", False),
        ("http://good.example/database/a.tif", False),
        ("file:///data/allowed/a.tif", True),
        ("/data/allowed/a.tif", True),
        ("file:///data/allowed-secret/a.tif", False),
        ("/data/allowed/../secret/a.tif", False),
        ("/vsicurl/http://good.example/data/a.tif", False),
        ("sqlite:///srv/mosaics.db:scenes", True),
        ("sqlite:///srv/mosaics.db2:scenes", False),
        ("s3://bucket/cogs/a.tif", True),
        ("s3://bucket/cogs-private/a.tif", False),
        ("s3://other-bucket/cogs/a.tif", False),
    ],
)
def test_allow_list_compares_parsed_urls(url, allowed):
    prefixes = [
        "http://good.example/data",
        "file:///data/allowed",
        "sqlite:///srv/mosaics.db:",
        "s3://bucket/cogs/",
    ]
    assert is_allowed(url, prefixes) is allowed


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fd00:ec2::254]/latest/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://user:pw@good.example/a.tif",
        "/vsicurl/http://internal/a.tif",
        "/data/../etc/passwd",
    ],
)
def test_some_forms_are_refused_even_without_a_list(url):
    with pytest.raises(UrlNotAllowed):
        check_url(url, [])
    with pytest.raises(UrlNotAllowed):
        check_url(url, ["*"])
