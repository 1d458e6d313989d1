"""The butler registry: dimensions records, dataset types, collections, datasets,
queries and provenance, in SQLite (default) or PostgreSQL through SQLAlchemy Core.
"""

from .._registry_exceptions import (
    CollectionCycleError,
    CollectionTypeError,
    ConflictingDefinitionError,
    DataIdError,
    DatasetInUseError,
    DatasetMetadataError,
    DimensionNameError,
    DimensionRecordError,
    MigrationRequiredError,
    MissingCollectionError,
    MissingDatasetError,
    MissingDatasetTypeError,
    OperatorTableError,
    ProvenanceError,
    QueryError,
    QueryNameError,
    QuerySyntaxError,
    QueryTypeError,
    RegistryDatabaseError,
    RegistryError,
    RepositoryVersionError,
)
from ._collections import CollectionRecord, CollectionType
from ._database import REGISTRY_FILENAME
from ._exclusions import ExclusionList
from ._graph import DatasetGraph
from ._index import INDEX_ENV, RepositoryIndex
from ._operator_tables import OperatorTable
from ._provenance import QuantumProvenance
from ._registry import Registry
from ._schema import SCHEMA_VERSION
from ._timespan import Timespan, to_tai_ns

__all__ = [
    "INDEX_ENV",
    "REGISTRY_FILENAME",
    "SCHEMA_VERSION",
    "CollectionCycleError",
    "CollectionRecord",
    "CollectionType",
    "CollectionTypeError",
    "ConflictingDefinitionError",
    "DataIdError",
    "DatasetGraph",
    "DatasetInUseError",
    "DatasetMetadataError",
    "DimensionNameError",
    "DimensionRecordError",
    "ExclusionList",
    "MigrationRequiredError",
    "MissingCollectionError",
    "MissingDatasetError",
    "MissingDatasetTypeError",
    "OperatorTable",
    "OperatorTableError",
    "ProvenanceError",
    "QuantumProvenance",
    "QueryError",
    "QueryNameError",
    "QuerySyntaxError",
    "QueryTypeError",
    "Registry",
    "RegistryDatabaseError",
    "RegistryError",
    "RepositoryIndex",
    "RepositoryVersionError",
    "Timespan",
    "to_tai_ns",
]
