"""The lock (uv.lock) is the single source of pinned versions: it matches pyproject.toml, the
Lambda's pinned set agrees with it, and the suite runs with what it pins."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]["name"]
RELOCK = "run `bash .ci/lock` and commit uv.lock"


def normalize(name: str) -> str:
    """PEP 503 name: `Rio_Tiler` and `rio.tiler` are `rio-tiler`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    """Package name -> the one version the lock pins for it."""
    versions: dict[str, set[str]] = {}
    for package in LOCK["package"]:
        if "version" in package:
            versions.setdefault(normalize(package["name"]), set()).add(package["version"])
    forked = {name: found for name, found in versions.items() if len(found) > 1}
    assert not forked, f"the lock pins several versions of a package: {forked}"
    return {name: found.pop() for name, found in versions.items()}


def pinned_requirements(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file (comments and options ignored)."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line.rstrip("\\").strip())
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{path}: {raw!r} is not a pin"
        )
        pins[normalize(requirement.name)] = specifiers[0].version
    return pins


def project_requirements() -> list[Requirement]:
    """Every requirement pyproject.toml names, the extras' included."""
    strings = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        strings += extra
    return [Requirement(s) for s in strings]


def test_lock_matches_pyproject():
    """A dependency added to pyproject.toml without re-locking is caught here, not on a fresh
    machine (`uv sync --frozen` would silently install the old set)."""
    root = next(p for p in LOCK["package"] if normalize(p["name"]) == normalize(PROJECT))
    locked = root["metadata"]
    declared = {
        (normalize(r["name"]), frozenset(map(str, SpecifierSet(r.get("specifier", "")))))
        for r in locked.get("requires-dist", [])
    }
    wanted = {(normalize(r.name), frozenset(map(str, r.specifier))) for r in project_requirements()}
    missing = sorted(f"{name}{','.join(sorted(spec))}" for name, spec in wanted - declared)
    assert not missing, f"pyproject.toml requires {missing} but uv.lock does not: {RELOCK}"
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    assert extras == set(locked.get("provides-extras", extras)), RELOCK
    versions = locked_versions()
    for requirement in project_requirements():
        name = normalize(requirement.name)
        assert name in versions, f"{name} is not in uv.lock: {RELOCK}"
        assert requirement.specifier.contains(versions[name], prereleases=True), (
            f"uv.lock pins {name} {versions[name]}, outside pyproject's {requirement}: {RELOCK}"
        )


def test_lambda_pins_agree_with_the_lock():
    """cdk/requirements-lambda.txt ships to Lambda what the tests ran with."""
    versions = locked_versions()
    lambda_pins = pinned_requirements(ROOT / "cdk" / "requirements-lambda.txt")
    shared = sorted(set(lambda_pins) & set(versions))
    assert len(shared) >= 20, "the Lambda set and the lock should share most packages"
    disagree = [
        f"{n}: lambda {lambda_pins[n]}, lock {versions[n]}"
        for n in shared
        if lambda_pins[n] != versions[n]
    ]
    assert not disagree, "cdk/requirements-lambda.txt disagrees with uv.lock:\n" + "\n".join(
        disagree
    )
    # every runtime dependency of the package is shipped (boto3 and friends come with Lambda)
    runtime = {normalize(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    not_shipped = runtime - set(lambda_pins) - {"boto3", "typer", "rich", "rio-cogeo"}
    assert not not_shipped, f"runtime dependencies missing from the Lambda set: {not_shipped}"


def test_the_suite_runs_with_the_locked_versions():
    """What `uv sync --frozen` installed is what runs: every package pyproject.toml names that is
    installed here has the locked version (pytest and schemathesis among them)."""
    versions = locked_versions()
    checked, wrong = [], []
    for requirement in project_requirements():
        name = normalize(requirement.name)
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        checked.append(name)
        if installed != versions[name]:
            wrong.append(f"{name} {installed} (lock: {versions[name]})")
    assert {"pytest", "schemathesis", "rio-tiler", "fastapi"} <= set(checked)
    assert not wrong, (
        "installed versions differ from uv.lock (bash .ci/run syncs them): " + ", ".join(wrong)
    )


def test_checkov_requirements_are_fully_pinned_with_hashes():
    """checkov's isolated venv is reproducible too: every line a pin, every pin hashed."""
    path = ROOT / ".ci" / "checkov-requirements.txt"
    pins = pinned_requirements(path)
    assert "checkov" in pins and len(pins) > 10, "compile it with `bash .ci/lock`"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    unhashed = [
        b.split()[0] for b in blocks if "==" in b.split("\n")[0] and "--hash=sha256:" not in b
    ]
    assert not unhashed, f"pins without hashes: {unhashed}"
