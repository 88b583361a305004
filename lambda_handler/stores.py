"""Listing the mosaics a store holds, for stores that can hold many."""

from pathlib import Path

from lambda_handler.errors import UnsupportedURIError


def list_mosaics(store: str) -> list[str]:
    """Names of the mosaics in `store`.

    Stores: `sqlite:///file.db`, `dynamodb://region/table` (or `dynamodb:///table`), and a
    local directory of `.json`/`.json.gz` documents.
    """
    if store.startswith("sqlite:///"):
        from lambda_handler.backends.sqlite import SQLiteBackend

        return SQLiteBackend.list_mosaics_in_db(store)
    if store.startswith("dynamodb://"):
        from lambda_handler.backends import backend_class

        return backend_class(store).list_mosaics_in_table(store)
    directory = Path(store[len("file://") :] if store.startswith("file://") else store)
    if "://" not in store and directory.is_dir():
        names = []
        for path in sorted(directory.iterdir()):
            for suffix in (".json.gz", ".json"):
                if path.name.endswith(suffix) and not path.name.startswith("."):
                    names.append(path.name[: -len(suffix)])
                    break
        return names
    raise UnsupportedURIError(
        f"cannot list mosaics in {store!r}: use sqlite:///file.db, dynamodb://region/table "
        "or a local directory"
    )
