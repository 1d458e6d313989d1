"""Errors raised by the butler's external-data plugins (reference catalogs, query datasets, selections).

::

    NightshiftError
    └── ExternalDataError
        ├── ReferenceCatalogError        (+ ValueError)   shard files / dataset type / region unusable
        ├── QueryDatasetError            (+ ValueError)
        │   ├── QueryDefinitionError                      not a single read-only SELECT/WITH statement
        │   ├── QueryBindError                            a bind parameter is missing, unknown or ambiguous
        │   ├── QueryEnvironmentError                     the DSN environment variable is unset or unusable
        │   └── QueryExecutionError      [retriable]      the database refused or failed the query
        └── SelectionError               (+ ValueError)
            ├── SelectionNotFoundError   (+ LookupError)  no selection of that name
            ├── SelectionExpressionError                  the filter expression is invalid
            └── SelectionColumnError     (+ LookupError)  the filter / column list names a missing column

Messages never contain a database URL or credentials: they name the
environment variable instead.
"""

from __future__ import annotations

from ..._exceptions import NightshiftError

__all__ = [
    "ExternalDataError",
    "QueryBindError",
    "QueryDatasetError",
    "QueryDefinitionError",
    "QueryEnvironmentError",
    "QueryExecutionError",
    "ReferenceCatalogError",
    "SelectionColumnError",
    "SelectionError",
    "SelectionExpressionError",
    "SelectionNotFoundError",
]


class ExternalDataError(NightshiftError):
    """Base of the errors of reference catalogs, query datasets and catalog selections."""

    error_type = "external"


class ReferenceCatalogError(ExternalDataError, ValueError):
    """A sharded reference catalog cannot be ingested or read (bad file names, no sky-pixel dimension ...)."""

    error_type = "external.refcat"


class QueryDatasetError(ExternalDataError, ValueError):
    """Base of the errors of datasets whose stored form is a database query."""

    error_type = "external.query"


class QueryDefinitionError(QueryDatasetError):
    """The query definition is invalid: not a single read-only SELECT/WITH statement, bad variable name ..."""

    error_type = "external.query_definition"


class QueryBindError(QueryDatasetError):
    """A bind parameter of the query is missing, not used by the query, or given twice."""

    error_type = "external.query_bind"


class QueryEnvironmentError(QueryDatasetError):
    """The environment variable that should hold the database URL is unset or does not hold a usable URL."""

    error_type = "external.query_environment"


class QueryExecutionError(QueryDatasetError):
    """The database refused the query or failed while running it (retrying may help for outages)."""

    retriable = True
    error_type = "external.query_execution"


class SelectionError(ExternalDataError, ValueError):
    """Base of the errors of named selections on catalogs."""

    error_type = "external.selection"


class SelectionNotFoundError(SelectionError, LookupError):
    """No selection of that name is defined (in ``butler.yaml`` or registered)."""

    error_type = "external.selection_not_found"


class SelectionExpressionError(SelectionError):
    """The selection's filter expression is not valid (syntax, operand types, unsupported construct)."""

    error_type = "external.selection_expression"


class SelectionColumnError(SelectionError, LookupError):
    """The selection's filter or column list names a column the catalog does not have."""

    error_type = "external.selection_column"
