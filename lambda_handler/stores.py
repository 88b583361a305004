"""Listing the mosaics a store holds, for stores that can hold many."""

from pathlib import Path

from lambda_handler.errors import (
    ListingNotSupportedError,
    MosaicNotFoundError,
    UnsupportedURIError,
)


def _names_in_directory(directory: Path, prefix: str, suffixes: tuple[str, ...]) -> list[str]:
    """`name` of every visible file `{prefix}{name}{suffix}` in a directory, sorted."""
    if not directory.is_dir():
        return []
    names = []
    for path in sorted(directory.iterdir()):
        base = path.name
        if base.startswith(".") or not base.startswith(prefix):
            continue
        for suffix in suffixes:
            if base.endswith(suffix) and len(base) > len(prefix) + len(suffix):
                names.append(base[len(prefix) : len(base) - len(suffix)])
                break
    return names


def list_mosaics(store: str) -> list[str]:
    """Names of the mosaics in `store`.

    Stores: `sqlite:///file.db`, `dynamodb://region/table` (or `dynamodb:///table`), and a
    local directory of `.json`/`.json.gz` documents.
    """
    if store.startswith("sqlite:///"):
        from lambda_handler.backends.sqlite import SQLiteBackend

        return SQLiteBackend.list_mosaics_in_db(store)
    if store.startswith("dynamodb://"):
        from lambda_handler.backends.dynamodb import DynamoDBBackend

        return DynamoDBBackend.list_mosaics(store)
    directory = Path(store.removeprefix("file://"))
    if "://" not in store.removeprefix("file://") and directory.is_dir():
        return _names_in_directory(directory, "", (".json.gz", ".json"))
    raise UnsupportedURIError(
        f"cannot list mosaics in {store!r}: use sqlite:///file.db, dynamodb://region/table "
        "or a local directory"
    )


def list_mosaic_ids(template: str) -> list[str]:
    """Ids of the mosaics in the store a URI template (with `{mosaic_id}`) points into.

    SQLite/DynamoDB: the store's own listing; a local-file template (`/dir/{mosaic_id}.json`):
    the directory's matching files; other stores: a `list_mosaics(template)` class method of
    their backend, when it has one. A store that does not exist yet holds nothing.
    """
    head, _, tail = template.partition("{mosaic_id}")
    if head.startswith(("sqlite:///", "dynamodb://")) and not tail:
        try:
            return list_mosaics(head.rstrip(":"))
        except MosaicNotFoundError:
            return []
    if "://" not in head or head.startswith("file://"):
        directory = Path(head.removeprefix("file://"))
        if head.endswith("/"):
            return _names_in_directory(directory, "", (tail,))
        return _names_in_directory(directory.parent, directory.name, (tail,))
    from lambda_handler.backends import backend_class

    try:
        lister = getattr(backend_class(head + "x" + tail), "list_mosaics", None)
    except UnsupportedURIError as err:
        raise ListingNotSupportedError(str(err)) from err
    if lister is None:
        raise ListingNotSupportedError(f"the store of {template!r} cannot list its mosaics")
    return list(lister(template))


def list_mosaic_page(
    template: str, limit: int, token: str | None
) -> tuple[list[str], str | None] | None:
    """One page of ids and the token of the next page (None at the end), for stores whose
    listing must not read the whole store per request (DynamoDB: a bounded Scan); None for
    stores listed whole (`list_mosaic_ids`)."""
    head, _, tail = template.partition("{mosaic_id}")
    if not (head.startswith("dynamodb://") and not tail):
        return None
    from lambda_handler.backends.dynamodb import DynamoDBBackend

    try:
        return DynamoDBBackend.list_page(head.rstrip(":"), limit=limit, token=token)
    except MosaicNotFoundError:
        return [], None
