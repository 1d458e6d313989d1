"""Storage classes: which Python type a dataset is in memory, and its components.

A storage class is named by a dataset type and defined in a text (YAML)
configuration (DMS-MWBT-REQ-0025), by default ``configs/storage_classes.yaml``::

    storage_classes:
      Exposure:
        pytype: nightshift.butler.formatters.Exposure
        delegate: nightshift.butler.formatters:ExposureDelegate
        components: {image: NumpyArray, wcs: Wcs, ...}
        parameters: [bbox]

Types and delegates are imported lazily, on first use, so a configuration may
name types of packages that are only needed by some datasets.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .._exceptions import NightshiftError

__all__ = ["StorageClass", "StorageClassDelegate", "StorageClassError", "StorageClassFactory"]

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "storage_classes.yaml"


class StorageClassError(NightshiftError, ValueError):
    """A storage class is unknown, misconfigured, or an object does not match it."""

    error_type = "storage_class"


def import_object(spec: str) -> Any:
    """Import ``package.module:Name`` or ``package.module.Name``.

    Raises
    ------
    ImportError
        If the module cannot be imported (the caller adds an install hint).
    AttributeError
        If the module has no such name.
    """
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{spec!r} is not an importable 'module:Name' or 'module.Name'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class StorageClassDelegate:
    """In-memory operations on objects of one storage class.

    The default delegate reads a component as an attribute or a mapping key, and
    understands no parameters. Subclasses (``ExposureDelegate`` ...) add
    parameter handling and component replacement.
    """

    def get_component(self, obj: Any, component: str) -> Any:
        """Return one component of ``obj``.

        Raises
        ------
        KeyError
            If ``obj`` has no such component.
        """
        if isinstance(obj, Mapping):
            return obj[component]
        try:
            return getattr(obj, component)
        except AttributeError as exc:
            raise KeyError(component) from exc

    def set_component(self, obj: Any, component: str, value: Any) -> Any:
        """Return a copy of ``obj`` with one component replaced (DMS-MWBT-REQ-0051)."""
        import copy

        new = copy.copy(obj)
        if isinstance(new, dict):
            new[component] = value
        else:
            setattr(new, component, value)
        return new

    def handle_parameters(self, obj: Any, parameters: Mapping[str, Any]) -> Any:
        """Apply read parameters to an object already in memory."""
        if parameters:
            raise ValueError(f"parameters {sorted(parameters)} are not supported by this storage class")
        return obj


@dataclass(frozen=True)
class StorageClass:
    """How one kind of dataset looks in memory.

    Parameters
    ----------
    name : str
        Name used by dataset types, e.g. ``Exposure``.
    pytype : str
        Import path of the Python type, e.g. ``astropy.table.Table``.
    components : mapping of str to str
        Component name to the storage class of that component.
    parameters : iterable of str
        Read parameters the storage class understands (``bbox``, ``columns``).
    delegate : str, optional
        Import path (``module:Class``) of a :class:`StorageClassDelegate`.
    """

    name: str
    pytype_name: str
    components: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    parameters: frozenset[str] = frozenset()
    delegate_name: str | None = None

    def __init__(
        self,
        name: str,
        pytype: str,
        components: Mapping[str, str] | None = None,
        parameters: Iterable[str] = (),
        delegate: str | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise StorageClassError(f"storage class name {name!r} is invalid")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "pytype_name", pytype)
        object.__setattr__(self, "components", MappingProxyType(dict(components or {})))
        object.__setattr__(self, "parameters", frozenset(parameters))
        object.__setattr__(self, "delegate_name", delegate)

    @property
    def pytype(self) -> type:
        """The Python type (imported on first use)."""
        try:
            obj = import_object(self.pytype_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise StorageClassError(
                f"storage class {self.name!r}: cannot import its Python type {self.pytype_name!r}: {exc}"
            ) from exc
        if not isinstance(obj, type):
            raise StorageClassError(f"storage class {self.name!r}: {self.pytype_name!r} is not a type")
        return obj

    def delegate(self) -> StorageClassDelegate:
        """A delegate for in-memory component and parameter handling."""
        if self.delegate_name is None:
            return StorageClassDelegate()
        try:
            cls = import_object(self.delegate_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise StorageClassError(
                f"storage class {self.name!r}: cannot import delegate {self.delegate_name!r}: {exc}"
            ) from exc
        delegate: StorageClassDelegate = cls()
        return delegate

    @property
    def is_composite(self) -> bool:
        """Whether the storage class has components."""
        return bool(self.components)

    def validate_instance(self, obj: Any) -> None:
        """Raise :class:`StorageClassError` unless ``obj`` is an instance of :attr:`pytype`."""
        if not isinstance(obj, self.pytype):
            raise StorageClassError(
                f"object of type {type(obj).__module__}.{type(obj).__qualname__} does not match storage "
                f"class {self.name!r} (expects {self.pytype_name})"
            )

    def to_dict(self) -> dict[str, Any]:
        """The configuration form of this storage class."""
        out: dict[str, Any] = {"pytype": self.pytype_name}
        if self.delegate_name:
            out["delegate"] = self.delegate_name
        if self.components:
            out["components"] = dict(self.components)
        if self.parameters:
            out["parameters"] = sorted(self.parameters)
        return out


class StorageClassFactory:
    """The known storage classes, loaded from YAML configuration.

    Parameters
    ----------
    config : mapping, optional
        ``{"storage_classes": {name: {...}}}``; merged over the packaged defaults
        unless ``include_defaults`` is False.
    include_defaults : bool
        Start from ``configs/storage_classes.yaml``.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, include_defaults: bool = True) -> None:
        self._classes: dict[str, StorageClass] = {}
        if include_defaults:
            self.update(yaml.safe_load(DEFAULT_CONFIG.read_text()))
        if config:
            self.update(config)

    @classmethod
    def from_yaml(cls, path: str | Path, include_defaults: bool = True) -> StorageClassFactory:
        """Load storage classes from a YAML file."""
        return cls(yaml.safe_load(Path(path).read_text()), include_defaults=include_defaults)

    def update(self, config: Mapping[str, Any]) -> None:
        """Add or replace storage classes from a ``{"storage_classes": {...}}`` mapping."""
        entries = config.get("storage_classes", config)
        if not isinstance(entries, Mapping):
            raise StorageClassError("storage class configuration must be a mapping of name to definition")
        for name, body in entries.items():
            if not isinstance(body, Mapping) or "pytype" not in body:
                raise StorageClassError(f"storage class {name!r} needs at least a 'pytype'")
            unknown = set(body) - {"pytype", "delegate", "components", "parameters"}
            if unknown:
                raise StorageClassError(f"storage class {name!r}: unknown key(s) {sorted(unknown)}")
            self.register(
                StorageClass(
                    name, body["pytype"], body.get("components"), body.get("parameters", ()), body.get("delegate")
                )
            )

    def register(self, storage_class: StorageClass) -> None:
        """Add (or replace) one storage class."""
        self._classes[storage_class.name] = storage_class

    def get(self, name: str) -> StorageClass:
        """The storage class called ``name``.

        Raises
        ------
        StorageClassError
            If no storage class has that name.
        """
        try:
            return self._classes[name]
        except KeyError:
            raise StorageClassError(
                f"unknown storage class {name!r}; known: {sorted(self._classes)}"
            ) from None

    def component_class(self, parent: str, component: str) -> StorageClass:
        """The storage class of ``component`` of storage class ``parent``."""
        sc = self.get(parent)
        if component not in sc.components:
            raise StorageClassError(
                f"storage class {parent!r} has no component {component!r}; it has {sorted(sc.components)}"
            )
        return self.get(sc.components[component])

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def names(self) -> list[str]:
        """Sorted names of all storage classes."""
        return sorted(self._classes)

    def to_dict(self) -> dict[str, Any]:
        """The whole configuration, e.g. to dump it (DMS-MWBT-REQ-0026)."""
        return {"storage_classes": {n: self._classes[n].to_dict() for n in sorted(self._classes)}}
