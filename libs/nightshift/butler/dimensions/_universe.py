"""The dimension universe: which dimensions exist and how they relate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .._registry_exceptions import DataIdError, DimensionNameError

__all__ = ["Dimension", "DimensionJoin", "DimensionUniverse", "FIELD_TYPES"]

#: Python types of the record field type names used in the universe config.
FIELD_TYPES: Mapping[str, tuple[type, ...]] = MappingProxyType(
    {"int": (int,), "float": (float, int), "string": (str,), "bool": (bool,)}
)


@dataclass(frozen=True)
class Dimension:
    """One dimension (e.g. ``visit``) and its record layout.

    Attributes
    ----------
    name : str
        The dimension name, also the data ID key.
    key_name : str
        Name of the record field holding the data ID value (``id`` or ``name``).
    key_type : str
        ``int`` or ``string``.
    key_length : int
        Column length of a string key.
    requires : tuple of str
        Dimensions that are part of this one's identity (``instrument`` for ``detector``).
    implies : tuple of str
        Dimensions whose value a record determines (``physical_filter`` for ``visit``).
    fields : mapping of str to str
        Metadata field name -> type name (``int``, ``float``, ``string``, ``bool``).
    has_region, has_timespan : bool
        Whether records carry a sky region / a time range.
    """

    name: str
    key_name: str
    key_type: str
    key_length: int
    requires: tuple[str, ...]
    implies: tuple[str, ...]
    fields: Mapping[str, str]
    has_region: bool
    has_timespan: bool

    @property
    def python_key_type(self) -> type:
        """``int`` or ``str``."""
        return int if self.key_type == "int" else str

    @property
    def record_fields(self) -> tuple[str, ...]:
        """Every field name a record of this element has, in table order."""
        names = [*self.requires, self.key_name, *self.implies, *self.fields]
        if self.has_timespan:
            names.append("timespan")
        if self.has_region:
            names.append("region")
        return tuple(names)


@dataclass(frozen=True)
class DimensionJoin:
    """A many-to-many relation between dimensions (e.g. ``visit_definition``)."""

    name: str
    dimensions: tuple[str, ...]


class DimensionUniverse:
    """All dimensions of a repository, loaded from a versioned configuration.

    Parameters
    ----------
    config : mapping
        The parsed universe configuration (see ``universe.yaml`` in this package).

    Raises
    ------
    DimensionNameError
        If the configuration refers to an undefined dimension.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        try:
            self.namespace: str = str(config["namespace"])
            self.version: int = int(config["version"])
            elements = config["elements"]
        except (KeyError, TypeError, ValueError) as exc:
            raise DimensionNameError(f"universe config lacks namespace/version/elements: {exc}") from exc
        dims: dict[str, Dimension] = {}
        for name, spec in elements.items():
            spec = spec or {}
            key = spec.get("key", {"name": "id", "type": "int"})
            if key.get("type") not in ("int", "string"):
                raise DimensionNameError(f"dimension {name!r}: key type must be 'int' or 'string'")
            fields = dict(spec.get("fields") or {})
            for fname, ftype in fields.items():
                if ftype not in FIELD_TYPES:
                    raise DimensionNameError(
                        f"dimension {name!r} field {fname!r} has type {ftype!r}; use one of {sorted(FIELD_TYPES)}"
                    )
            dims[name] = Dimension(
                name=name,
                key_name=key["name"],
                key_type=key["type"],
                key_length=int(key.get("length", 64)),
                requires=tuple(spec.get("requires") or ()),
                implies=tuple(spec.get("implies") or ()),
                fields=MappingProxyType(fields),
                has_region=bool(spec.get("region", False)),
                has_timespan=bool(spec.get("timespan", False)),
            )
        for dim in dims.values():
            for other in (*dim.requires, *dim.implies):
                if other not in dims:
                    raise DimensionNameError(f"dimension {dim.name!r} refers to undefined dimension {other!r}")
        self._dims = dims
        self.joins: Mapping[str, DimensionJoin] = MappingProxyType(
            {
                name: DimensionJoin(name, tuple(spec["dimensions"]))
                for name, spec in (config.get("joins") or {}).items()
            }
        )
        self._order = self._topological_order()
        self._sorted_cache: dict[tuple[str, ...], tuple[str, ...]] = {}

    # --- construction -----------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> DimensionUniverse:
        """Load a universe from a YAML file."""
        with open(path, encoding="utf-8") as stream:
            return cls(yaml.safe_load(stream))

    @staticmethod
    @cache
    def default() -> DimensionUniverse:
        """The universe shipped with this version of nightshift."""
        text = resources.files(__package__).joinpath("universe.yaml").read_text(encoding="utf-8")
        return DimensionUniverse(yaml.safe_load(text))

    def to_config(self) -> dict[str, Any]:
        """The configuration this universe was built from (round-trips through the constructor)."""
        elements: dict[str, Any] = {}
        for d in self._dims.values():
            spec: dict[str, Any] = {"key": {"name": d.key_name, "type": d.key_type, "length": d.key_length}}
            if d.requires:
                spec["requires"] = list(d.requires)
            if d.implies:
                spec["implies"] = list(d.implies)
            if d.fields:
                spec["fields"] = dict(d.fields)
            if d.has_region:
                spec["region"] = True
            if d.has_timespan:
                spec["timespan"] = True
            elements[d.name] = spec
        return {
            "namespace": self.namespace,
            "version": self.version,
            "elements": elements,
            "joins": {j.name: {"dimensions": list(j.dimensions)} for j in self.joins.values()},
        }

    # --- lookup -----------------------------------------------------------

    def __getitem__(self, name: str) -> Dimension:
        try:
            return self._dims[name]
        except KeyError:
            raise DimensionNameError(
                f"unknown dimension {name!r}; known dimensions: {', '.join(self._order)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._dims

    @property
    def names(self) -> tuple[str, ...]:
        """All dimension names, each after the dimensions it requires or implies."""
        return self._order

    def sorted(self, names: Iterable[str]) -> tuple[str, ...]:
        """``names`` in the universe's dependency order (validated)."""
        if isinstance(names, tuple):
            found = self._sorted_cache.get(names)
            if found is not None:
                return found
        wanted = set(names)
        for name in wanted:
            self[name]
        out = tuple(n for n in self._order if n in wanted)
        if isinstance(names, tuple):
            self._sorted_cache[names] = out
        return out

    def required_closure(self, names: Iterable[str]) -> tuple[str, ...]:
        """``names`` plus everything they (recursively) require, sorted."""
        return self.sorted(self._closure(names, implies=False))

    def full_closure(self, names: Iterable[str]) -> tuple[str, ...]:
        """``names`` plus everything they require or imply, recursively, sorted."""
        return self.sorted(self._closure(names, implies=True))

    def _closure(self, names: Iterable[str], *, implies: bool) -> set[str]:
        todo = list(names)
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            dim = self[name]
            seen.add(name)
            todo.extend(dim.requires)
            if implies:
                todo.extend(dim.implies)
        return seen

    def _topological_order(self) -> tuple[str, ...]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise DimensionNameError(f"dimension relationships form a cycle: {' -> '.join((*path, name))}")
            state[name] = 1
            dim = self._dims[name]
            for other in sorted((*dim.requires, *dim.implies)):
                visit(other, (*path, name))
            state[name] = 2
            order.append(name)

        # sorted: the order (and so every data ID key string) does not depend on the config's key order
        for name in sorted(self._dims):
            visit(name, ())
        return tuple(order)

    # --- data IDs ---------------------------------------------------------

    def check_value(self, dimension: str, value: object) -> int | str:
        """Validate one data ID value against the dimension's key type."""
        dim = self[dimension]
        if dim.key_type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                # numpy integers are accepted and converted
                if hasattr(value, "__index__") and not isinstance(value, bool):
                    return int(value)
                raise DataIdError(
                    f"data ID value for {dimension!r} must be an int, got {value!r} ({type(value).__name__})"
                )
            return value
        if not isinstance(value, str):
            raise DataIdError(
                f"data ID value for {dimension!r} must be a str, got {value!r} ({type(value).__name__})"
            )
        return value

    def normalize_data_id(
        self, dimensions: Iterable[str], data_id: Mapping[str, object], *, what: str = "data ID"
    ) -> dict[str, int | str]:
        """Keep exactly ``dimensions`` from ``data_id``, checking presence and types.

        Extra keys that are known dimensions are dropped (e.g. an implied
        ``band``); unknown keys are an error.

        Raises
        ------
        DataIdError
            If a required key is missing or a value has the wrong type.
        DimensionNameError
            If ``data_id`` has a key that is not a dimension.
        """
        for key in data_id:
            if key not in self._dims:
                raise DimensionNameError(
                    f"{what} {dict(data_id)} has unknown key {key!r}; known dimensions: {', '.join(self._order)}"
                )
        out: dict[str, int | str] = {}
        missing = []
        for name in self.sorted(dimensions):
            if name not in data_id:
                missing.append(name)
                continue
            out[name] = self.check_value(name, data_id[name])
        if missing:
            raise DataIdError(f"{what} {dict(data_id)} lacks required key(s) {missing}; add them")
        return out

    def __repr__(self) -> str:
        return f"DimensionUniverse({self.namespace!r}, version={self.version}, {list(self._order)})"
