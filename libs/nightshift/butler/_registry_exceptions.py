"""Errors raised by the butler registry.

Every class derives from :class:`nightshift.NightshiftError` and from the
builtin that matches its meaning, so ``except LookupError`` keeps working::

    NightshiftError
    └── RegistryError
        ├── MissingDatasetTypeError      (+ LookupError)  dataset type not registered
        ├── MissingCollectionError       (+ LookupError)  collection does not exist
        ├── MissingDatasetError          (+ LookupError)  dataset id not in the registry
        ├── DimensionNameError           (+ LookupError)  unknown dimension, element or record field
        ├── DataIdError                  (+ ValueError)   data ID lacks a key / has a wrong type / no record
        ├── DimensionRecordError         (+ ValueError)   record misses a field or has a wrong value
        ├── ConflictingDefinitionError   (+ ValueError)   redefinition, duplicate dataset, overlapping validity
        ├── CollectionTypeError          (+ ValueError)   wrong kind of collection for the operation
        ├── CollectionCycleError         (+ ValueError)   a CHAINED collection would contain itself
        ├── QueryError                   (+ ValueError)   a ``where`` expression cannot be used
        │   ├── QuerySyntaxError                          not valid syntax (carries ``position``)
        │   ├── QueryNameError           (+ LookupError)  unknown name in the expression
        │   └── QueryTypeError                            operand types do not fit the operator
        ├── DatasetMetadataError         (+ ValueError)   undeclared or wrongly typed metadata
        ├── ProvenanceError              (+ ValueError)   inconsistent quantum provenance
        ├── DatasetInUseError            (+ ValueError)   removal refused: provenance lists it as an input
        ├── OperatorTableError           (+ ValueError)   unknown operator table, bad definition or row
        ├── RepositoryVersionError       (+ ValueError)   schema newer than this code
        ├── MigrationRequiredError       (+ ValueError)   schema older than this code: run ``migrate``
        └── RegistryDatabaseError        [retriable]      the database failed (locked, connection lost)
"""

from __future__ import annotations

from .._exceptions import NightshiftError

__all__ = [
    "CollectionCycleError",
    "CollectionTypeError",
    "ConflictingDefinitionError",
    "DataIdError",
    "DatasetInUseError",
    "DatasetMetadataError",
    "DimensionNameError",
    "DimensionRecordError",
    "MigrationRequiredError",
    "MissingCollectionError",
    "MissingDatasetError",
    "MissingDatasetTypeError",
    "OperatorTableError",
    "ProvenanceError",
    "QueryError",
    "QueryNameError",
    "QuerySyntaxError",
    "QueryTypeError",
    "RegistryDatabaseError",
    "RegistryError",
    "RepositoryVersionError",
]


class RegistryError(NightshiftError):
    """Base of every registry error."""

    error_type = "registry"


class MissingDatasetTypeError(RegistryError, LookupError):
    """A dataset type name is not registered."""

    error_type = "registry.missing_dataset_type"


class MissingCollectionError(RegistryError, LookupError):
    """A collection does not exist."""

    error_type = "registry.missing_collection"


class MissingDatasetError(RegistryError, LookupError):
    """A dataset id is not in the registry."""

    error_type = "registry.missing_dataset"


class DimensionNameError(RegistryError, LookupError):
    """An unknown dimension, dimension element or record field."""

    error_type = "registry.dimension_name"


class DataIdError(RegistryError, ValueError):
    """A data ID lacks a required key, has a value of the wrong type or names no record."""

    error_type = "registry.data_id"


class DimensionRecordError(RegistryError, ValueError):
    """A dimension record misses a field or has a value of the wrong type."""

    error_type = "registry.dimension_record"


class ConflictingDefinitionError(RegistryError, ValueError):
    """Something exists already with a different definition (or overlaps it)."""

    error_type = "registry.conflict"


class CollectionTypeError(RegistryError, ValueError):
    """The collection has the wrong type for the operation (e.g. certify into a RUN)."""

    error_type = "registry.collection_type"


class CollectionCycleError(RegistryError, ValueError):
    """A CHAINED collection would (indirectly) contain itself."""

    error_type = "registry.collection_cycle"


class QueryError(RegistryError, ValueError):
    """A ``where`` expression cannot be used.

    Attributes
    ----------
    expression : str
        The expression as given.
    position : int or None
        0-based character offset of the problem, when known.
    """

    error_type = "registry.query"

    def __init__(self, message: str, expression: str = "", position: int | None = None) -> None:
        self.expression = expression
        self.position = position
        if position is not None and expression:
            message = f"{message}\n  {expression}\n  {' ' * position}^ (position {position})"
        super().__init__(message)


class QuerySyntaxError(QueryError):
    """The expression is not valid syntax; ``position`` says where."""

    error_type = "registry.query_syntax"


class QueryNameError(QueryError, LookupError):
    """The expression names an unknown dimension, field or bind value."""

    error_type = "registry.query_name"


class QueryTypeError(QueryError):
    """An operand's type does not fit the operator or the column."""

    error_type = "registry.query_type"


class DatasetMetadataError(RegistryError, ValueError):
    """Metadata not declared by the dataset type, or of the wrong type."""

    error_type = "registry.dataset_metadata"


class ProvenanceError(RegistryError, ValueError):
    """Provenance that cannot be true (e.g. an actual input that was not predicted)."""

    error_type = "registry.provenance"


class DatasetInUseError(RegistryError, ValueError):
    """A dataset cannot be removed: provenance records it as an input of an existing output.

    Attributes
    ----------
    dataset_id : uuid.UUID
        The dataset that was to be removed.
    used_by : uuid.UUID
        One existing output made from it.
    """

    error_type = "registry.dataset_in_use"

    def __init__(self, message: str, dataset_id: object = None, used_by: object = None) -> None:
        super().__init__(message)
        self.dataset_id = dataset_id
        self.used_by = used_by


class OperatorTableError(RegistryError, ValueError):
    """An operator table is unknown, or its definition or a row does not fit (REQ-0088)."""

    error_type = "registry.operator_table"


class RepositoryVersionError(RegistryError, ValueError):
    """The repository's schema is newer than this code understands."""

    error_type = "registry.version"


class MigrationRequiredError(RegistryError, ValueError):
    """The repository's schema is older than this code; run the explicit migration."""

    error_type = "registry.migration_required"


class RegistryDatabaseError(RegistryError):
    """The database itself failed (locked, connection lost); retrying may succeed."""

    retriable = True
    error_type = "registry.database"


def _check_unique_error_types() -> None:
    seen: dict[str, str] = {}
    for name in __all__:
        cls = globals()[name]
        code = cls.error_type
        if code in seen:
            raise RuntimeError(f"error_type {code!r} used by both {seen[code]} and {name}")
        seen[code] = name


_check_unique_error_types()
