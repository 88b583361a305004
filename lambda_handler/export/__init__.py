"""Large exports: render many mosaic tiles (locally or on a batch endpoint), assemble one COG.

`export_mosaic(output, zoom, bbox=..., source=ExportSource(...), tiles=ExportTiles(...),
run=ExportRun(...))`; the source may also be given as keywords (`uri=...`, or
`endpoint=..., mosaic_id=...`)."""

from lambda_handler.export.job import ExportOutput, ExportRun, ExportSource, ExportTiles
from lambda_handler.export.plan import ExportPlan, plan_export
from lambda_handler.export.progress import ProgressSink, RichProgress
from lambda_handler.export.runner import ExportReport, export_mosaic
from lambda_handler.tile_pipeline import TileOptions

__all__ = [
    "ExportOutput",
    "ExportPlan",
    "ExportReport",
    "ExportRun",
    "ExportSource",
    "ExportTiles",
    "ProgressSink",
    "RichProgress",
    "TileOptions",
    "export_mosaic",
    "plan_export",
]
