"""In-memory backend: a document held by the process (`None` or `:memory:`)."""

from typing import ClassVar

import attr

from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.errors import MosaicNotFoundError
from lambda_handler.mosaic.model import MosaicJSON


@attr.s
class MemoryBackend(MosaicJSONBackend):
    """A MosaicJSON document that lives only in this process."""

    input: str = attr.ib(default=":memory:")

    _backend_name: ClassVar[str] = "memory"
    _cacheable: ClassVar[bool] = False

    def _read(self) -> MosaicJSON:
        raise MosaicNotFoundError("the in-memory backend needs a document: pass mosaic_def")

    def _read_for_write(self) -> tuple[MosaicJSON, None]:
        # The document held is the stored copy: nothing to re-read before a write.
        return self.mosaic_def, None

    def write(self, overwrite: bool = False) -> None:
        """Nothing to store: the document is already in memory."""

    def delete(self) -> None:
        """Forget the index."""
        self.mosaic_def = self.mosaic_def.model_copy(update={"tiles": {}})
