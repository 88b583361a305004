"""The CDK app: `npx cdk synth|deploy` (cdk.json runs `python3 infrastructure.py`).

Options come from `cdk.json` context, `-c key=value` and `MOSAIC_CDK_<KEY>` environment variables
(see `cdk/config.py`); the stack name from the `stack_name` option.
"""

import os

import aws_cdk as cdk

from cdk.config import ENV_PREFIX, props_from_context
from cdk.stack import MosaicTilerStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    """Add the stack to `app` (a new one by default) and return it."""
    app = app or cdk.App()
    props = props_from_context(app.node.try_get_context)
    name = os.environ.get(ENV_PREFIX + "STACK_NAME") or app.node.try_get_context("stack_name")
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    MosaicTilerStack(app, name or "MosaicTiler", props, env=env)
    return app


if __name__ == "__main__":
    build_app().synth()
