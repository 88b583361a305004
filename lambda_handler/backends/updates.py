"""Writing a mosaic safely: the write guard every read-modify-write runs under, and `update`
(merging footprints into the index). Mixed into `MosaicJSONBackend`; the stores provide
`_read`, `write`, `delete`, `_fetch_quadkeys` and `_persist_update`."""

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lambda_handler.errors import MosaicChangedError, MosaicConflictError, ReadOnlyBackendError
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.settings import write_settings

if TYPE_CHECKING:
    from lambda_handler.backends.base import MosaicJSONBackend

# Called on the fresh read inside a guarded write; raises (MosaicPreconditionError) to refuse it.
Precondition = Callable[["MosaicJSONBackend"], None]


def _index_parameters(document: MosaicJSON) -> tuple[Any, ...]:
    """What an addition's quadkeys depend on: an addition built for other values is rebuilt."""
    return (
        document.minzoom,
        document.maxzoom,
        document.index_zoom,
        document.tms.id,
        document.asset_prefix,
    )


def merge_assets(old: list[str], new: list[str], add_first: bool) -> list[str]:
    """Merged asset list without duplicates, so running the same update twice changes nothing."""
    if add_first:
        seen = set(new)
        return list(dict.fromkeys(new)) + [a for a in old if a not in seen]
    seen = set(old)
    return list(old) + [a for a in dict.fromkeys(new) if a not in seen]


def _addition_index(
    features: Sequence[dict[str, Any]], current: MosaicJSON, **kwargs: Any
) -> MosaicJSON:
    """The index of `features` in the zooms, TMS and quadkey zoom of `current`."""
    # The builder (and shapely behind it) is not needed to read tiles: imported by updates.
    from lambda_handler.mosaic.builder import from_features

    return from_features(
        features,
        current.minzoom,
        current.maxzoom,
        quadkey_zoom=current.index_zoom,
        tilematrixset=current.tilematrixset,
        asset_prefix=current.asset_prefix,
        **kwargs,
    )


def bbox_union(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """The smallest bbox holding both."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


class GuardedWrites:
    """Replace, conditional delete and update of a stored mosaic, safe against concurrent
    writers (see `_run_guarded`)."""

    # The store's token of the copy read by `_refresh` (object ETag, GCS generation), set only
    # during a guarded write: the final write is made conditional on it.
    _expected_token: Any = None

    # ------------------------------------------------------------------ concurrent writers
    # Every read-modify-write runs under `_write_guard()` (a lock of the store: SQLite's write
    # transaction, the file store's lock file; nothing for object stores) on a fresh read
    # (`_refresh`), and object stores make the final write conditional on the token of that
    # read: a concurrent change is either waited for or detected (MosaicChangedError), and then
    # the whole operation is re-read, re-merged and retried. Nothing is merged from a stale read.
    @contextmanager
    def _write_guard(self) -> Iterator[None]:
        """Held around a read-modify-write; stores with a lock make other writers wait here."""
        yield

    def _read_for_write(self) -> tuple[MosaicJSON, Any]:
        """A fresh (never cached) read and the store's token of the copy read (None for stores
        whose write guard is a lock)."""
        return self._read(), None

    def _refresh(self) -> None:
        document, self._expected_token = self._read_for_write()
        self.mosaic_def = document
        self.bounds = tuple(document.bounds)

    def _run_guarded(
        self, action: Callable[[], None], precondition: Precondition | None, what: str
    ) -> None:
        """Run `action` on a fresh read under the write guard; retry (bounded, with jittered
        backoff) when a conditional write finds the mosaic changed, then refuse with
        MosaicConflictError. A failed precondition is never retried."""
        if self._is_read_only():
            # Read-only stores: refuse before a fresh read (a STAC search, an HTTP fetch).
            raise ReadOnlyBackendError(f"the {self._backend_name} backend is read-only")
        attempts = write_settings().update_attempts
        last: MosaicChangedError | None = None
        for attempt in range(attempts):
            try:
                with self._write_guard():
                    self._refresh()
                    if precondition is not None:
                        precondition(self)
                    action()
                return
            except MosaicChangedError as err:
                last = err
                self._invalidate()
                time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))
            finally:
                self._expected_token = None
        raise MosaicConflictError(
            f"{what} of {self.input} refused: the mosaic was changed by concurrent writers "
            f"during each of {attempts} attempts (nothing of this {what} was stored; retry later)"
        ) from last

    def replace(self, document: MosaicJSON, precondition: Precondition | None = None) -> None:
        """Replace the stored mosaic (MosaicNotFoundError if there is none) by `document`, after
        `precondition` passed on a fresh read; atomic against concurrent writers."""

        def action() -> None:
            self.mosaic_def = document
            self.bounds = tuple(document.bounds)
            self.write(overwrite=True)

        self._run_guarded(action, precondition, "replace")

    def delete_if(self, precondition: Precondition) -> None:
        """Delete the mosaic if `precondition` passes on a fresh read; atomic against
        concurrent writers where the store allows it (locks, conditional deletes)."""
        self._run_guarded(self.delete, precondition, "delete")

    # ------------------------------------------------------------------ updates
    def addition_index(self, features: Sequence[dict[str, Any]], **kwargs: Any) -> MosaicJSON:
        """The index `features` would add to this mosaic (its zooms, TMS and quadkey zoom)."""
        return _addition_index(features, self.mosaic_def, **kwargs)

    def update(
        self,
        features: Sequence[dict[str, Any]],
        add_first: bool = True,
        quiet: bool = True,
        precondition: Precondition | None = None,
        addition: MosaicJSON | None = None,
        **kwargs: Any,
    ) -> None:
        """Add footprints to the mosaic: merge their assets per quadkey, bump the version,
        union the bounds. An asset already listed for a quadkey is not added twice.
        `addition` is `addition_index(features)` when the caller built it already (to size the
        write), so the footprints are not indexed twice.

        Concurrent updates are all applied or refused: the merge is made on a fresh read under
        the store's write guard (and a conditional write), retried when another writer got in
        first, and refused with MosaicConflictError after `MOSAIC_WRITE_UPDATE_ATTEMPTS`.
        `precondition` is checked on that fresh read (HTTP If-Match).

        `quiet` is accepted for cogeo-mosaic's signature; the builder prints nothing."""

        def build(current: MosaicJSON) -> MosaicJSON:
            return _addition_index(features, current, **kwargs)

        # Built before the guard (no lock held while footprints are indexed); rebuilt inside
        # only if a concurrent replace changed what the quadkeys depend on.
        built = {_index_parameters(self.mosaic_def): addition or build(self.mosaic_def)}

        def merge_and_store() -> None:
            current = self.mosaic_def
            key = _index_parameters(current)
            if key not in built:
                built[key] = build(current)
            addition = built[key]
            stored = self._fetch_quadkeys(list(addition.tiles))
            changed = {
                qk: merge_assets(stored.get(qk, []), new_assets, add_first)
                for qk, new_assets in addition.tiles.items()
            }
            bounds = bbox_union(current.bounds, addition.bounds)
            document = current.model_copy(
                update={
                    "bounds": bounds,
                    "center": (
                        (bounds[0] + bounds[2]) / 2,
                        (bounds[1] + bounds[3]) / 2,
                        current.minzoom,
                    ),
                },
                deep=False,
            )
            document.bump_version()
            if current.mosaicjson != addition.mosaicjson:
                document.mosaicjson = addition.mosaicjson
            self._persist_update(document, changed)
            if not self._tiles_in_document:  # document stores hold the merged index already
                self.mosaic_def = document
            self.bounds = bounds

        try:
            self._run_guarded(merge_and_store, precondition, "update")
        finally:
            self._invalidate()
