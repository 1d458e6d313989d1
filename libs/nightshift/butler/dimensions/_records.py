"""Dimension records: the metadata row of one dimension value."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["DimensionRecord"]


class DimensionRecord(Mapping[str, Any]):
    """An immutable record of one dimension value, e.g. a visit's seeing and region.

    Fields are available as attributes (``record.seeing``) and as mapping
    items (``record["seeing"]``).

    Parameters
    ----------
    element : str
        The dimension name (``visit``).
    fields : mapping
        Field name -> value, including the keys of required dimensions.
    """

    __slots__ = ("_element", "_fields")

    def __init__(self, element: str, fields: Mapping[str, Any]) -> None:
        self._element = element
        self._fields = MappingProxyType(dict(fields))

    @property
    def element(self) -> str:
        """Name of the dimension this record belongs to."""
        return self._element

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"{self._element} record has no field {name!r}") from None

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DimensionRecord):
            return NotImplemented
        return self._element == other._element and dict(self._fields) == dict(other._fields)

    def __hash__(self) -> int:
        return hash((self._element, tuple(sorted((k, repr(v)) for k, v in self._fields.items()))))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy of the fields."""
        return dict(self._fields)

    def __repr__(self) -> str:
        return f"DimensionRecord({self._element!r}, {dict(self._fields)!r})"
