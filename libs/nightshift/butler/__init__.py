"""The butler: data access through a registry (what exists) and datastores (the bytes).

Public names are re-exported here from private ``_module.py`` files.
"""

from ._dataset_ref import DataIdValue, DatasetRef, deterministic_dataset_id
from ._dataset_type import DatasetType

__all__ = ["DataIdValue", "DatasetRef", "DatasetType", "deterministic_dataset_id"]
