"""Keep the datastore in step with a registry transaction that may fail.

Every write path of the butler stores bytes *inside* a registry transaction
and must remove them again when the transaction does not commit (all or
nothing, DMS-MWBT-REQ-0076). :func:`removing_on_failure` is that one pattern;
:func:`restore_trash` is its counterpart for bytes moved aside by
:meth:`Datastore.trash`. A failure to clean up never hides the original error:
it is attached to it as a note (:pep:`678`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._dataset_ref import DatasetRef
    from ._base import Datastore, DatastoreTrash

__all__ = ["removing_on_failure", "restore_trash"]


@contextlib.contextmanager
def removing_on_failure(datastore: Datastore) -> Iterator[list[DatasetRef]]:
    """Remove the datasets written in the block from ``datastore`` if the block raises.

    Open it *outside* the registry transaction, so that a failing commit is
    seen too::

        with removing_on_failure(butler.datastore) as written, registry.transaction():
            (ref,) = registry.insert_datasets(...)
            datastore.put(obj, ref)
            written.append(ref)

    Yields
    ------
    list of DatasetRef
        Append each ref once its bytes are stored.

    Notes
    -----
    The original exception is re-raised unchanged; a dataset whose removal
    fails too is named in a note added to it.
    """
    written: list[DatasetRef] = []
    try:
        yield written
    except BaseException as exc:
        for ref in written:
            try:
                datastore.remove(ref)
            except Exception as undo:  # noqa: BLE001 - the original error is what the caller must see
                exc.add_note(
                    f"removing the bytes of {ref.dataset_type.name} {ref.id} written before this error failed "
                    f"too ({type(undo).__name__}: {undo}); remove them from datastore {datastore.name!r} by hand"
                )
        raise


def restore_trash(trash: DatastoreTrash | None, exc: BaseException) -> None:
    """Undo a datastore trash after ``exc``; a failure to undo is noted on ``exc``, never raised over it."""
    if trash is None:
        return
    try:
        trash.restore()
    except Exception as undo:  # noqa: BLE001 - the original error is what the caller must see
        exc.add_note(f"restoring the datastore after this error failed too: {undo}")
