"""The CDK app: `npx cdk synth|deploy` (cdk.json runs `python3 infrastructure.py`).

Options come from `cdk.json` context, `-c key=value` and `MOSAIC_CDK_<KEY>` environment variables
over the defaults of the props dataclasses (see `cdk/config.py`); the stack name from the
`stack_name` option.
"""

import os

import aws_cdk as cdk

from cdk.config import props_from_context, stack_name
from cdk.stack import MosaicTilerStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    """Add the stack to `app` (a new one by default) and return it."""
    app = app or cdk.App()
    context = app.node.try_get_context
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    MosaicTilerStack(app, stack_name(context), props_from_context(context), env=env)
    return app


if __name__ == "__main__":
    build_app().synth()
