"""Finished tiles kept on disk next to the output, so an interrupted export resumes."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from lambda_handler.export.plan import ExportError, ExportPlan

EMPTY = "empty"


class TileStore:
    """A directory of rendered tiles: `{z}-{x}-{y}.npz` (data + mask) or `.empty` markers.

    Every file is written to a temporary name then renamed, so a crash never leaves a
    half-written tile that a resumed run would trust.
    """

    def __init__(self, directory: Path, plan: ExportPlan):
        self.directory = Path(directory)
        self.plan = plan
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = self.directory / "manifest.json"
        fingerprint = plan.fingerprint()
        if manifest.exists():
            stored = json.loads(manifest.read_text())
            if stored.get("fingerprint") != fingerprint:
                raise ExportError(
                    f"{self.directory} holds tiles of a different export (other area, zoom or "
                    "options): remove it or choose another output"
                )
        else:
            self._atomic_write(manifest, json.dumps({"fingerprint": fingerprint}).encode())

    def _name(self, x: int, y: int) -> str:
        return f"{self.plan.zoom}-{x}-{y}"

    def _atomic_write(self, path: Path, body: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def done(self) -> set[tuple[int, int]]:
        """Tiles already finished (rendered or known empty)."""
        finished = set()
        prefix = f"{self.plan.zoom}-"
        for entry in os.scandir(self.directory):
            stem, _, suffix = entry.name.rpartition(".")
            if suffix in ("npz", EMPTY) and stem.startswith(prefix):
                _, x, y = stem.split("-")
                finished.add((int(x), int(y)))
        return finished

    def save(self, x: int, y: int, data: np.ndarray | None, mask: np.ndarray | None) -> None:
        """Keep a rendered tile (None data: the tile is empty)."""
        if data is None:
            self._atomic_write(self.directory / f"{self._name(x, y)}.{EMPTY}", b"")
            return
        import io

        buffer = io.BytesIO()
        np.savez_compressed(buffer, data=data, mask=mask if mask is not None else np.array([]))
        self._atomic_write(self.directory / f"{self._name(x, y)}.npz", buffer.getvalue())

    def load(self, x: int, y: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A kept tile (None when it is empty)."""
        path = self.directory / f"{self._name(x, y)}.npz"
        if not path.exists():
            return None
        with np.load(path) as archive:
            mask = archive["mask"]
            return archive["data"], (mask if mask.size else None)

    def remove(self) -> None:
        """Delete the kept tiles once the COG is written."""
        for entry in os.scandir(self.directory):
            os.unlink(entry.path)
        self.directory.rmdir()
