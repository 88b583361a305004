"""Shared fixtures: generated COGs, the real-world fixtures folder, cache isolation.

Fixtures that start local servers live in their own plugin modules (listed below) so each
storage's suite owns its servers.
"""

from pathlib import Path

import pytest

from lambda_handler import cache
from lambda_handler.sample_data import generate_scenes

pytest_plugins: list[str] = [
    "tests.servers_cloud",
    "tests.servers_aws",
    "tests.fault_proxy",
    "tests.servers_stac",
    "tests.servers_api",
    "tests.dynamodb_support",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"

# The marks a test gets from the server fixtures it uses (markers: pyproject.toml), so that a
# test added later is marked without anyone remembering to: `-m "not slow"` leaves out every
# test that starts a process.
AWS_FIXTURES = (
    *("moto_server", "dynalite_server", "private_dynalite", "s3rver_server"),
    *("dynamodb_server", "s3_server", "dynamodb_env", "s3_env", "gdal_s3_env"),
)
FIXTURE_MARKS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(AWS_FIXTURES, ("aws", "slow")),
    "stac_api": ("stac", "slow"),
    "gcs_emulator": ("cloud", "slow"),
    "azurite": ("cloud", "slow"),
    "api_server": ("slow",),
    # Module fixtures running the app under uvicorn in a process of its own.
    **dict.fromkeys(("fuzz_server", "faulty_server", "fault_server", "file_api"), ("slow",)),
}
# Modules whose tests build or run something heavy, by name prefix (a new test_cdk_* module is
# marked too): CDK synth (node), the Lambda bundle under python3.12, Chromium, the README's and
# the CLI's commands in fresh processes.
MODULE_MARKS: dict[str, tuple[str, ...]] = {
    "test_cdk": ("cdk", "slow"),
    "test_lambda_bundle": ("lambda", "slow"),
    "test_snapstart": ("lambda", "slow"),
    "test_browser": ("browser", "slow"),
    "test_readme": ("slow",),
    "test_cli": ("slow",),
    # Exports of whole areas and concurrent writer processes: tens of seconds each.
    "test_export": ("slow",),
    "test_concurrent_writes": ("slow",),
}
# Parametrized fixtures that start a server only for some of their parameters (they ask for
# it with request.getfixturevalue, which item.fixturenames cannot see).
PARAMETER_MARKS: dict[tuple[str, str], tuple[str, ...]] = {
    ("client", "uvicorn"): ("slow",),
    # test_concurrent_writes' precondition test, one store kind per parameter.
    ("kind", "s3"): ("aws", "slow"),
    ("kind", "azure"): ("cloud", "slow"),
}


def _marks_of(item: pytest.Item) -> set[str]:
    """The marks an item gets from its fixtures, parameters and module."""
    names = {mark for fixture in item.fixturenames for mark in FIXTURE_MARKS.get(fixture, ())}
    params = getattr(getattr(item, "callspec", None), "params", {})
    for (fixture, value), marks in PARAMETER_MARKS.items():
        if params.get(fixture) == value:
            names.update(marks)
    module = item.path.stem
    for prefix, marks in MODULE_MARKS.items():
        if module.startswith(prefix):
            names.update(marks)
    return names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it starts (FIXTURE_MARKS, PARAMETER_MARKS, MODULE_MARKS)."""
    for item in items:
        for name in sorted(_marks_of(item) - {mark.name for mark in item.iter_markers()}):
            item.add_marker(name)


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test starts with empty mosaic caches (a cached read must not leak across tests)."""
    cache.clear_all()
    yield
    cache.clear_all()


@pytest.fixture(scope="session")
def cog_dir(tmp_path_factory) -> Path:
    """Directory holding every generated COG variant."""
    directory = tmp_path_factory.mktemp("cogs")
    for variant in ("uint8", "uint16", "uint16_4band"):
        generate_scenes(directory, variant)
    return directory


@pytest.fixture(scope="session")
def sample_cogs(cog_dir) -> list[str]:
    """Four overlapping 3-band uint8 COGs in UTM zones 17N/18N (nodata 0)."""
    return generate_scenes(cog_dir, "uint8")


@pytest.fixture(scope="session")
def sample_cogs_uint16(cog_dir) -> list[str]:
    """The same scenes as 3-band uint16 COGs (nodata 0)."""
    return generate_scenes(cog_dir, "uint16")


@pytest.fixture(scope="session")
def sample_cogs_4band(cog_dir) -> list[str]:
    """The same scenes as 4-band uint16 COGs (nodata 0)."""
    return generate_scenes(cog_dir, "uint16_4band")


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """`../shared/fixtures` (real files from other projects); skips when absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real-world fixtures folder not found: {SHARED_FIXTURES} (../shared/fixtures)")
    return SHARED_FIXTURES


@pytest.fixture
def mosaic():
    """A small in-memory mosaic: three footprints, zooms 5-10, quadkey zoom 7."""
    from lambda_handler.mosaic import from_features
    from tests.geometry import square

    features = [
        square(1.0, 1.0, 2.0, "a.tif"),
        square(2.0, 1.5, 2.0, "b.tif"),
        square(-3.0, -2.0, 1.0, "c.tif"),
    ]
    return from_features(features, 5, 10, quadkey_zoom=7, name="test")
