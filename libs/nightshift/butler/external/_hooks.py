"""The read hooks of ``nightshift.butler.external``, registered when the package is imported.

``Butler.get(..., parameters={"selection": name})`` reads a named selection
(DMS-MWBT-REQ-0056); ``Butler.get`` of a ``QueryDefinition`` dataset runs the
query (DMS-MWBT-REQ-0057). The implementations (numpy, astropy, SQLAlchemy)
are imported on the first such read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._read_hooks import read_hooks

if TYPE_CHECKING:
    from .._butler import Butler
    from .._dataset_ref import DatasetRef

__all__: list[str] = []


def _read_selection(butler: Butler, ref: DatasetRef, parameters: Mapping[str, Any] | None,
                    storage_class: str | None) -> Any:
    from ._selection import read_selection

    return read_selection(butler, ref, parameters or {}, storage_class)


def _read_query_dataset(butler: Butler, ref: DatasetRef, parameters: Mapping[str, Any] | None,
                        storage_class: str | None) -> Any:
    from ._query import read_query_dataset

    return read_query_dataset(butler, ref, parameters, storage_class)


# The names of _selection.SELECTION_PARAMETER and _query.QUERY_STORAGE_CLASS, without importing them.
read_hooks.register(_read_selection, parameter="selection")
read_hooks.register(_read_query_dataset, storage_class="QueryDefinition")
