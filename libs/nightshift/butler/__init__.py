"""The butler: data access through a registry (what exists) and datastores (the bytes).

Public names are re-exported here from private ``_module.py`` files. The heavy
parts (the SQLAlchemy registry, astropy-based formatters, boto3 datastores) are
imported on first use, so ``import nightshift.butler`` stays cheap for a process
that needs only the registry, or only dataset refs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports
from ._dataset_ref import DataIdValue, DatasetRef, deterministic_dataset_id
from ._dataset_type import DatasetType

if TYPE_CHECKING:
    from ._butler import Butler, ButlerConfigError
    from ._file_provenance import FileProvenance, ProvenanceDataset, read_file_provenance
    from ._file_templates import FileTemplate, FileTemplateError, FileTemplates
    from ._read_hooks import ReadHook, ReadHooks, read_hooks
    from ._repository_chain import LocatedDataset, RepositoryChain
    from ._storage_class import StorageClass, StorageClassError, StorageClassFactory
    from .datastores import DatasetNotFoundError, DatastoreError
    from .dimensions import DimensionRecord, DimensionUniverse
    from .external import QueryDefinition, Selection, ingest_reference_catalog, load_reference_catalog
    from .formatters import Box, Exposure, FormatterError
    from .registry import CollectionType, DatasetGraph, ExclusionList, Registry, RegistryError, Timespan

_LAZY = {
    "Butler": "._butler",
    "ButlerConfigError": "._butler",
    "FileProvenance": "._file_provenance",
    "ProvenanceDataset": "._file_provenance",
    "read_file_provenance": "._file_provenance",
    "FileTemplate": "._file_templates",
    "FileTemplateError": "._file_templates",
    "FileTemplates": "._file_templates",
    "LocatedDataset": "._repository_chain",
    "ReadHook": "._read_hooks",
    "ReadHooks": "._read_hooks",
    "read_hooks": "._read_hooks",
    "RepositoryChain": "._repository_chain",
    "StorageClass": "._storage_class",
    "StorageClassError": "._storage_class",
    "StorageClassFactory": "._storage_class",
    "DatasetNotFoundError": ".datastores",
    "DatastoreError": ".datastores",
    "DimensionRecord": ".dimensions",
    "DimensionUniverse": ".dimensions",
    "QueryDefinition": ".external",
    "Selection": ".external",
    "ingest_reference_catalog": ".external",
    "load_reference_catalog": ".external",
    "Box": ".formatters",
    "Exposure": ".formatters",
    "FormatterError": ".formatters",
    "CollectionType": ".registry",
    "DatasetGraph": ".registry",
    "ExclusionList": ".registry",
    "Registry": ".registry",
    "RegistryError": ".registry",
    "Timespan": ".registry",
}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)


__all__ = [
    "Box",
    "Butler",
    "ButlerConfigError",
    "CollectionType",
    "DataIdValue",
    "DatasetGraph",
    "DatasetNotFoundError",
    "DatasetRef",
    "DatasetType",
    "DatastoreError",
    "DimensionRecord",
    "DimensionUniverse",
    "ExclusionList",
    "Exposure",
    "FileProvenance",
    "FileTemplate",
    "FileTemplateError",
    "FileTemplates",
    "FormatterError",
    "LocatedDataset",
    "ProvenanceDataset",
    "QueryDefinition",
    "ReadHook",
    "ReadHooks",
    "Registry",
    "RegistryError",
    "RepositoryChain",
    "Selection",
    "StorageClass",
    "StorageClassError",
    "StorageClassFactory",
    "Timespan",
    "deterministic_dataset_id",
    "ingest_reference_catalog",
    "load_reference_catalog",
    "read_file_provenance",
    "read_hooks",
]
