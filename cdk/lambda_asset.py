"""The Lambda asset as CDK code: the package sources fingerprinted by CDK, built in this process
by `cdk.bundling.build_asset` (Docker is never used).

CDK does not hash a local bundler, so the spec (`BundleSpec.environment()`) goes into
`BundlingOptions.environment`, which CDK does hash: a changed spec is a new asset.
`cdk/bundling.py` imports no CDK (the benchmarks build assets without it); this module does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from cdk.bundling import BundleSpec, build_asset


@jsii.implements(ILocalBundling)
class LocalBundler:
    """Builds the asset in this process with `build_asset`."""

    def __init__(self, spec: BundleSpec) -> None:
        self.spec = spec

    def try_bundle(self, output_dir: str, *, image: Any = None, **_: Any) -> bool:
        """Build into `output_dir`; any failure raises (and fails the synth)."""
        build_asset(self.spec, Path(output_dir))
        return True


def lambda_code(spec: BundleSpec) -> lambda_.Code:
    """`aws_lambda.Code` of the asset: the package sources fingerprinted, bundled locally."""
    if spec.package_dir is None:
        raise ValueError("a Lambda asset needs package_dir")
    return lambda_.Code.from_asset(
        str(spec.package_dir),
        exclude=["**/__pycache__", "**/*.pyc"],
        bundling=BundlingOptions(
            # Never pulled nor run: the local bundler always succeeds or raises.
            image=DockerImage.from_registry("local-bundling-only"),
            local=LocalBundler(spec),
            environment=spec.environment(),
        ),
    )
