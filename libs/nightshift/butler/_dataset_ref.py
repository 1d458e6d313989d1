"""Dataset references: which dataset, in which RUN, with which UUID."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._dataset_type import DatasetType

DataIdValue = int | str
#: uuid5 namespace of nightshift dataset ids (fixed forever: ids must be reproducible).
DATASET_ID_NAMESPACE = uuid.UUID("b6f4a0a2-3a36-5b35-9d2f-6e1c5f0d3a11")


def deterministic_dataset_id(dataset_type_name: str, data_id: Mapping[str, DataIdValue], run: str) -> uuid.UUID:
    """The uuid5 of (dataset type, data ID, run): a replayed put maps to the same id."""
    key = ";".join([dataset_type_name, run, *(f"{k}={data_id[k]!r}" for k in sorted(data_id))])
    return uuid.uuid5(DATASET_ID_NAMESPACE, key)


@dataclass(frozen=True)
class DatasetRef:
    """A resolved reference to one dataset.

    Parameters
    ----------
    dataset_type : DatasetType
    data_id : mapping of str to int or str
        Values of (at least) the dataset type's dimensions.
    run : str
        The RUN collection the dataset was written to.
    id : uuid.UUID, optional
        Defaults to :func:`deterministic_dataset_id`.
    """

    dataset_type: DatasetType
    data_id: Mapping[str, DataIdValue]
    run: str
    id: uuid.UUID

    def __init__(
        self,
        dataset_type: DatasetType,
        data_id: Mapping[str, DataIdValue],
        run: str,
        id: uuid.UUID | None = None,  # noqa: A002 - the daf_butler name
    ) -> None:
        missing = [d for d in dataset_type.dimensions if d not in data_id]
        if missing:
            raise ValueError(
                f"data ID {dict(data_id)} for dataset type {dataset_type.name!r} lacks required "
                f"dimension(s) {missing}"
            )
        frozen = MappingProxyType({k: data_id[k] for k in sorted(data_id)})
        object.__setattr__(self, "dataset_type", dataset_type)
        object.__setattr__(self, "data_id", frozen)
        object.__setattr__(self, "run", run)
        object.__setattr__(
            self, "id", id if id is not None else deterministic_dataset_id(dataset_type.parent_name, frozen, run)
        )

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetRef):
            return NotImplemented
        return self.id == other.id and self.dataset_type == other.dataset_type

    def make_component_ref(self, component: str) -> DatasetRef:
        """The ref of one component (e.g. ``wcs``), sharing this dataset's id."""
        from ._dataset_type import DatasetType as _DT

        comp_type = _DT(
            f"{self.dataset_type.name}.{component}", self.dataset_type.dimensions,
            self.dataset_type.storage_class, self.dataset_type.is_calibration,
        )
        return DatasetRef(comp_type, self.data_id, self.run, self.id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_type": self.dataset_type.to_dict(),
            "data_id": dict(self.data_id),
            "run": self.run,
            "id": str(self.id),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetRef:
        return cls(DatasetType.from_dict(data["dataset_type"]), data["data_id"], data["run"], uuid.UUID(data["id"]))
