"""Docker-free bundling of the Lambda asset: pinned wheels + the package + Python 3.12 bytecode.

`build_asset(spec, out)` does the work and is used by the CDK bundler (`cdk/lambda_asset.py`),
the tests and the cold-start benchmark alike:

1. `pip install --no-deps --only-binary=:all:` of the pinned requirements for the Lambda
   platform (three manylinux tags: with only the oldest one pip silently picks older
   rasterio/numpy wheels), into a dependency directory cached by the spec's hash;
2. pruning that Lambda never needs (tests, stubs, headers, console scripts, debug symbols of
   extension modules outside `*.libs/`, the older of the two PROJ databases);
3. the `lambda_handler` package copied next to it;
4. bytecode compiled by Python 3.12 (`unchecked-hash`: Lambda's code directory is read-only and
   the zip does not keep modification times, so timestamp-checked `.pyc` files would be ignored
   and every module recompiled at each cold start);
5. a size check against Lambda's 250 MB unzipped limit that fails the synth.

CDK does not hash the local bundler, so `BundleSpec.environment()` (pinned requirements hash,
platforms, Python version, bundler version) goes into `BundlingOptions.environment`: changing any
of them changes the asset hash and a stale asset is never deployed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = PROJECT_ROOT / "lambda_handler"
DEFAULT_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-lambda.txt"
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes, function code and layers together
# Bump when the build steps below change what ends up in the asset (part of the asset hash).
BUNDLER_VERSION = "1"
CACHE_DIR_ENV = "MOSAIC_BUNDLE_CACHE"
PYTHON_ENV = "MOSAIC_BUNDLE_PYTHON"
_PLATFORM_TAGS = ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
_PACKAGE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")


class BundlingError(RuntimeError):
    """The Lambda asset could not be built (pip, Python 3.12, or the size limit)."""


class BundleTooLargeError(BundlingError):
    """The unzipped asset is over Lambda's limit."""


@dataclass(frozen=True)
class BundleSpec:
    """What goes into a Lambda asset: pinned requirements, target Python and architecture."""

    requirements: Path = DEFAULT_REQUIREMENTS
    python_version: str = "3.12"
    architecture: str = "x86_64"
    package_dir: Path | None = PACKAGE_DIR
    max_unzipped_bytes: int = LAMBDA_UNZIPPED_LIMIT
    extra_pip_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.architecture not in _MACHINES:
            raise ValueError(
                f"architecture {self.architecture!r} is not one of {sorted(_MACHINES)}"
            )

    @property
    def platforms(self) -> tuple[str, ...]:
        """pip `--platform` tags of the Lambda architecture."""
        machine = _MACHINES[self.architecture]
        return tuple(f"{tag}_{machine}" for tag in _PLATFORM_TAGS)

    def pinned_requirements(self) -> list[str]:
        """The requirement lines (comments and blanks dropped); every line must pin `==`."""
        lines = []
        for raw in self.requirements.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if "==" not in line:
                raise BundlingError(f"{self.requirements}: {line!r} is not pinned with '=='")
            lines.append(line)
        return lines

    def environment(self) -> dict[str, str]:
        """The spec as strings, for `BundlingOptions.environment` (it feeds the asset hash)."""
        requirements = "\n".join(sorted(self.pinned_requirements()))
        return {
            "BUNDLE_PYTHON_VERSION": self.python_version,
            "BUNDLE_PLATFORMS": ",".join(self.platforms),
            "BUNDLE_REQUIREMENTS_SHA256": hashlib.sha256(requirements.encode()).hexdigest(),
            "BUNDLE_EXTRA_PIP_ARGS": " ".join(self.extra_pip_args),
            "BUNDLER_VERSION": BUNDLER_VERSION,
        }

    def key(self) -> str:
        """Short hash of `environment()`: names the cached dependency directory."""
        blob = json.dumps(self.environment(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class AssetReport:
    """What a build produced."""

    path: Path
    unzipped_bytes: int
    dependencies_cached: bool
    pruned_bytes: int = 0
    largest: list[tuple[str, int]] = field(default_factory=list)


def cache_root() -> Path:
    """Where dependency directories are cached (`$MOSAIC_BUNDLE_CACHE`, else ~/.cache/…)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "lambda-mosaic-tiler"


def find_python(version: str = "3.12") -> str:
    """A Python `version` interpreter to compile bytecode with; raises with a hint when absent."""
    candidates = []
    if os.environ.get(PYTHON_ENV):
        candidates.append(os.environ[PYTHON_ENV])
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out == version:
            return candidate
    raise BundlingError(
        f"Python {version} is needed to compile the Lambda asset's bytecode (modules without "
        f"{version} bytecode are recompiled at every cold start) but none was found: install "
        f"python{version} on PATH or set {PYTHON_ENV} to its path"
    )


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout)[-4000:]
        raise BundlingError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")


def install_dependencies(spec: BundleSpec, target: Path) -> None:
    """pip-install the pinned wheels for the Lambda platform into `target`."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile"]
    cmd += ["--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp"]
    cmd += ["--python-version", spec.python_version, "--target", str(target)]
    for platform in spec.platforms:
        cmd += ["--platform", platform]
    cmd += [*spec.extra_pip_args, "-r", str(spec.requirements)]
    _run(cmd, "pip install of the Lambda dependencies")


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _proj_layout(proj_dir: Path) -> tuple[int, int]:
    import sqlite3

    db = proj_dir / "proj.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = dict(conn.execute("SELECT key, value FROM metadata").fetchall())
    return int(rows["DATABASE.LAYOUT.VERSION.MAJOR"]), int(rows["DATABASE.LAYOUT.VERSION.MINOR"])


def dedupe_proj_data(root: Path) -> Path | None:
    """Keep one of rasterio's and pyproj's PROJ databases: the newer layout (a newer PROJ
    library refuses an older database; an older one reads a newer). Returns the kept directory,
    relative to `root`; the handler points `PROJ_DATA` at it (`LambdaSettings.proj_data`)."""
    found = [
        d
        for d in (root / "rasterio" / "proj_data", root / "pyproj" / "proj_dir" / "share" / "proj")
        if (d / "proj.db").is_file()
    ]
    if len(found) < 2:
        return found[0].relative_to(root) if found else None
    keep = max(found, key=_proj_layout)
    for directory in found:
        if directory != keep:
            shutil.rmtree(directory)
    return keep.relative_to(root)


def prune(root: Path) -> int:
    """Remove what Lambda never uses; returns the bytes saved.

    Never strips inside `*.libs/` (auditwheel's vendored libraries: stripping them breaks numpy).
    """
    before = _tree_size(root)
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists() and not path.is_symlink():
            continue
        name = path.name
        if path.is_dir() and name in {"tests", "__pycache__"}:
            shutil.rmtree(path)
        elif path.is_file() and (name.endswith(".pyi") or name.endswith((".pyx", ".pxd"))):
            path.unlink()
    for directory in (root / "bin", root / "numpy" / "_core" / "include"):
        if directory.is_dir():
            shutil.rmtree(directory)
    dedupe_proj_data(root)
    shared = [
        str(p)
        for p in root.rglob("*.so*")
        if p.is_file() and not any(part.endswith(".libs") for part in p.relative_to(root).parts)
    ]
    if shared and shutil.which("strip"):
        # Debug symbols only; a file strip cannot handle is left as it is.
        subprocess.run(["strip", "--strip-debug", *shared], capture_output=True)
    return before - _tree_size(root)


def compile_bytecode(python: str, root: Path) -> None:
    """Compile every module under `root` with `python` (unchecked-hash .pyc files)."""
    _run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(root),
        ],
        "bytecode compilation",
    )


def largest_packages(root: Path, count: int = 8) -> list[tuple[str, int]]:
    """The biggest top-level entries of the asset, by size."""
    sizes = [(p.name, _tree_size(p) if p.is_dir() else p.stat().st_size) for p in root.iterdir()]
    return sorted(sizes, key=lambda item: item[1], reverse=True)[:count]


def check_size(root: Path, limit: int) -> int:
    """Raise `BundleTooLargeError` when the unzipped tree is over `limit` bytes."""
    size = _tree_size(root)
    if size > limit:
        top = ", ".join(f"{name} {n / 1e6:.1f} MB" for name, n in largest_packages(root))
        raise BundleTooLargeError(
            f"the Lambda asset is {size:,} bytes unzipped, over the limit of {limit:,} bytes "
            f"(largest parts: {top}); remove dependencies from the requirements or move them "
            "to a layer"
        )
    return size


def _dependencies(spec: BundleSpec, python: str) -> tuple[Path, bool]:
    """The cached, pruned, compiled dependency directory of `spec` (built when missing)."""
    target = cache_root() / f"deps-{spec.key()}"
    if (target / ".complete").is_file():
        return target, True
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"deps-{spec.key()}-", dir=target.parent))
    try:
        install_dependencies(spec, work)
        pruned = prune(work)
        compile_bytecode(python, work)
        (work / ".complete").write_text(json.dumps({"pruned_bytes": pruned, **spec.environment()}))
        if target.exists():  # a half-built leftover of an interrupted build
            shutil.rmtree(target)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target, False


def build_asset(spec: BundleSpec, output_dir: Path) -> AssetReport:
    """Build the Lambda asset of `spec` into `output_dir` (created or emptied first)."""
    python = find_python(spec.python_version)
    deps, cached = _dependencies(spec, python)
    output_dir = Path(output_dir)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    shutil.copytree(deps, output_dir, symlinks=True, ignore=shutil.ignore_patterns(".complete"))
    if spec.package_dir is not None:
        package_out = output_dir / spec.package_dir.name
        shutil.copytree(spec.package_dir, package_out, ignore=_PACKAGE_IGNORE)
        compile_bytecode(python, package_out)
    size = check_size(output_dir, spec.max_unzipped_bytes)
    meta = json.loads((deps / ".complete").read_text())
    return AssetReport(
        path=output_dir,
        unzipped_bytes=size,
        dependencies_cached=cached,
        pruned_bytes=int(meta.get("pruned_bytes", 0)),
        largest=largest_packages(output_dir),
    )


def spec_hash(spec: BundleSpec) -> str:
    """Hash of the spec and the package sources: names a reusable built asset."""
    digest = hashlib.sha256(spec.key().encode())
    if spec.package_dir is not None:
        for path in sorted(spec.package_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(spec.package_dir)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_asset(spec: BundleSpec, root: Path | None = None) -> AssetReport:
    """`build_asset` into `<cache>/asset-<hash of spec and sources>`, reused when present."""
    target = (root or cache_root()) / f"asset-{spec.key()}-{spec_hash(spec)}"
    marker = target / ".asset.json"
    if marker.is_file():
        data = json.loads(marker.read_text())
        return AssetReport(target, data["unzipped_bytes"], True, data["pruned_bytes"])
    report = build_asset(spec, target)
    # One asset per source state: drop the older ones (each is ~180 MB).
    for old in target.parent.glob(f"asset-{spec.key()}-*"):
        if old != target and (old / ".asset.json").is_file():
            shutil.rmtree(old, ignore_errors=True)
    marker.write_text(
        json.dumps({"unzipped_bytes": report.unzipped_bytes, "pruned_bytes": report.pruned_bytes})
    )
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m cdk.bundling [OUT] [--arch arm64]`: build an asset and print its size."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=PROJECT_ROOT / "build" / "asset")
    parser.add_argument("--arch", default="x86_64", choices=sorted(_MACHINES))
    parser.add_argument("--requirements", type=Path, default=DEFAULT_REQUIREMENTS)
    args = parser.parse_args(argv)
    report = build_asset(BundleSpec(args.requirements, architecture=args.arch), args.out)
    print(f"{report.path}: {report.unzipped_bytes / 1e6:.1f} MB unzipped")
    for name, size in report.largest:
        print(f"  {name:30} {size / 1e6:8.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
