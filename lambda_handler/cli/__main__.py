"""`python -m lambda_handler.cli`: the same as the `mosaic-tiler` console script."""

from lambda_handler.cli.app import main

main()
