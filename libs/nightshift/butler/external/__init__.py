"""External data through the butler: outside catalogs, database queries and named catalog selections.

* :func:`ingest_reference_catalog` / :func:`load_reference_catalog` -- a
  third-party catalog sharded by HEALPix cell, ingested in place and read with
  the same ``Butler.get`` as survey datasets (DMS-MWBT-REQ-0048);
* :class:`QueryDefinition` -- a read-only SQL query stored as a dataset whose
  ``get`` returns the query's result (DMS-MWBT-REQ-0057);
* :class:`Selection` / :class:`Selections` -- named aliases to row/column
  subsets of catalogs, read with ``parameters={"selection": name}``
  (DMS-MWBT-REQ-0056).

See ``docs/butler-external-data.md``. The errors are imported eagerly; the
rest (numpy, astropy, SQLAlchemy) on first use. Importing this package
registers its two read hooks (``parameters={"selection": ...}`` and storage
class ``QueryDefinition``) into :data:`nightshift.butler.read_hooks`; the
butler core does not know them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports as _lazy_exports
from . import _hooks  # noqa: F401 - registers the read hooks
from ._exceptions import (
    ExternalDataError,
    QueryBindError,
    QueryDatasetError,
    QueryDefinitionError,
    QueryEnvironmentError,
    QueryExecutionError,
    ReferenceCatalogError,
    SelectionColumnError,
    SelectionError,
    SelectionExpressionError,
    SelectionNotFoundError,
)

if TYPE_CHECKING:
    from ._query import QueryDefinition, run_query
    from ._refcat import ingest_reference_catalog, load_reference_catalog, skypix_dimension
    from ._selection import Selection, Selections

_LAZY = {
    "QueryDefinition": "._query",
    "Selection": "._selection",
    "Selections": "._selection",
    "ingest_reference_catalog": "._refcat",
    "load_reference_catalog": "._refcat",
    "run_query": "._query",
    "skypix_dimension": "._refcat",
}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)



__all__ = [
    "ExternalDataError",
    "QueryBindError",
    "QueryDatasetError",
    "QueryDefinition",
    "QueryDefinitionError",
    "QueryEnvironmentError",
    "QueryExecutionError",
    "ReferenceCatalogError",
    "Selection",
    "SelectionColumnError",
    "SelectionError",
    "SelectionExpressionError",
    "SelectionNotFoundError",
    "Selections",
    "ingest_reference_catalog",
    "load_reference_catalog",
    "run_query",
    "skypix_dimension",
]
