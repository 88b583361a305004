"""Large exports: render many mosaic tiles (locally or on a batch endpoint), assemble one COG."""

from lambda_handler.export.plan import ExportPlan, plan_export
from lambda_handler.export.runner import ExportReport, export_mosaic

__all__ = ["ExportPlan", "ExportReport", "export_mosaic", "plan_export"]
