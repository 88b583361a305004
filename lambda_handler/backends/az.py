"""cogeo-mosaic's module and class names for the Azure Blob Storage backend
(`backends.az.ABSBackend`, `az://{account}.blob.core.windows.net/{container}/{key}`)."""

from lambda_handler.backends.azure import AzureBackend

ABSBackend = AzureBackend

__all__ = ["ABSBackend", "AzureBackend"]
