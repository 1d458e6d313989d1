"""Dataset types: a name, the dimensions that identify a dataset, a storage class."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class DatasetType:
    """A named kind of dataset, e.g. ``calexp`` over (instrument, visit, detector).

    Parameters
    ----------
    name : str
        ``calexp``; a component is addressed as ``calexp.wcs``.
    dimensions : iterable of str
        Names of the dimensions whose values identify one dataset.
    storage_class : str
        Name of the storage class (in-memory type + components), resolved by
        the formatter configuration of the datastore.
    is_calibration : bool
        Whether datasets of this type may be certified in CALIBRATION collections.
    metadata : mapping
        Declared metadata field names and types, stored in the registry so they
        can be read without opening the file (DMS-MWBT-REQ-0091).
    """

    name: str
    dimensions: tuple[str, ...]
    storage_class: str
    is_calibration: bool = False
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __init__(
        self,
        name: str,
        dimensions: Iterable[str],
        storage_class: str,
        is_calibration: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"dataset type name {name!r} is invalid: use letters, digits and '_', "
                "starting with a letter or '_' ('.' only to name a component)"
            )
        if not storage_class:
            raise ValueError(f"dataset type {name!r} needs a storage class")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dimensions", tuple(sorted(set(dimensions))))
        object.__setattr__(self, "storage_class", storage_class)
        object.__setattr__(self, "is_calibration", bool(is_calibration))
        object.__setattr__(self, "metadata", MappingProxyType(dict(metadata or {})))

    def __hash__(self) -> int:
        return hash((self.name, self.dimensions, self.storage_class, self.is_calibration))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetType):
            return NotImplemented
        return (self.name, self.dimensions, self.storage_class, self.is_calibration, dict(self.metadata)) == (
            other.name, other.dimensions, other.storage_class, other.is_calibration, dict(other.metadata)
        )

    @property
    def parent_name(self) -> str:
        """``calexp`` for ``calexp.wcs``; the name itself for a parent."""
        return self.name.split(".", 1)[0]

    @property
    def component(self) -> str | None:
        """``wcs`` for ``calexp.wcs``; None for a parent."""
        parts = self.name.split(".", 1)
        return parts[1] if len(parts) == 2 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dimensions": list(self.dimensions),
            "storage_class": self.storage_class,
            "is_calibration": self.is_calibration,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetType:
        return cls(
            data["name"], data["dimensions"], data["storage_class"],
            data.get("is_calibration", False), data.get("metadata"),
        )
