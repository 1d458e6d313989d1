"""Formatter plugins by name, imported lazily, and their selection by configuration.

``FormatterRegistry`` maps a short name (``fits_exposure``) to an import path
(``module:Class``) and the distribution that provides it, so that a missing
library produces an error naming the package to install instead of an
``ImportError`` at start-up. Third-party formatters are registered with
:meth:`FormatterRegistry.register` or named by import path in configuration.

``FormatterFactory`` chooses the formatter of a dataset from configuration
(DMS-MWBT-REQ-0025)::

    formatters:
      storage_classes:
        Exposure: fits_exposure
        AstropyTable: {formatter: parquet, options: {compression: zstd}}
      dataset_types:                     # wins over storage_classes
        calexp: {formatter: fits_exposure, options: {compression: RICE_1}}
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._dataset_type import DatasetType
from .._storage_class import import_object
from ._base import Formatter
from ._exceptions import FormatterDependencyError, FormatterError, FormatterNotFoundError

__all__ = ["FormatterFactory", "FormatterRegistry", "FormatterSpec", "default_formatter_registry"]


@dataclass(frozen=True, eq=False)
class FormatterSpec:
    """A configured formatter: its registered name plus writer/reader options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def key(self) -> str:
        """A canonical string identifying name + options."""
        return json.dumps([self.name, dict(self.options)], sort_keys=True, default=str)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FormatterSpec) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def to_dict(self) -> dict[str, Any]:
        """Configuration form (also stored in datastore records)."""
        return {"formatter": self.name, "options": dict(self.options)}

    @classmethod
    def coerce(cls, value: Any) -> FormatterSpec:
        """From ``"name"`` or ``{"formatter": name, "options": {...}}``."""
        if isinstance(value, FormatterSpec):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and "formatter" in value:
            unknown = set(value) - {"formatter", "options"}
            if unknown:
                raise FormatterError(f"formatter entry has unknown key(s) {sorted(unknown)}")
            return cls(str(value["formatter"]), MappingProxyType(dict(value.get("options") or {})))
        raise FormatterError(f"formatter entry {value!r} is neither a name nor {{formatter:, options:}}")


class FormatterRegistry:
    """Formatter classes by name, imported on first use (thread-safe)."""

    def __init__(self) -> None:
        self._targets: dict[str, tuple[str, str | None]] = {}
        self._loaded: dict[str, type[Formatter]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, target: str | type[Formatter], requires: str | None = None) -> None:
        """Register a formatter.

        Parameters
        ----------
        name : str
            Short name used in configuration and stored in datastore records.
        target : str or type
            ``"package.module:Class"`` (imported lazily) or the class itself.
        requires : str, optional
            Distribution to ``pip install`` if the import fails.
        """
        with self._lock:
            if isinstance(target, type):
                self._loaded[name] = target
                self._targets[name] = (f"{target.__module__}:{target.__qualname__}", requires)
            else:
                self._loaded.pop(name, None)
                self._targets[name] = (target, requires)

    def names(self) -> list[str]:
        """Registered names."""
        return sorted(self._targets)

    def get(self, name: str) -> type[Formatter]:
        """The formatter class for ``name`` (or for an explicit ``module:Class`` path).

        Raises
        ------
        FormatterNotFoundError
            Unknown name.
        FormatterDependencyError
            The formatter's library is not installed; the message says which.
        """
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            if name in self._targets:
                target, requires = self._targets[name]
            elif ":" in name:
                target, requires = name, None
            else:
                raise FormatterNotFoundError(
                    f"no formatter called {name!r}; registered: {sorted(self._targets)}"
                )
            try:
                cls = import_object(target)
            except ImportError as exc:
                hint = f"pip install {requires}" if requires else f"install the package providing {target}"
                raise FormatterDependencyError(
                    f"formatter {name!r} needs a package that is not installed ({exc.name or exc}); "
                    f"to use it: {hint}"
                ) from exc
            except (AttributeError, ValueError) as exc:
                raise FormatterNotFoundError(f"formatter {name!r}: cannot import {target!r}: {exc}") from exc
            if not (isinstance(cls, type) and issubclass(cls, Formatter)):
                raise FormatterNotFoundError(f"{target!r} is not a Formatter subclass")
            self._loaded[name] = cls
            return cls

    def create(self, spec: FormatterSpec) -> Formatter:
        """An instance of the formatter named by ``spec`` with its options."""
        return self.get(spec.name)(spec.options)


_PKG = "nightshift.butler.formatters"


def default_formatter_registry() -> FormatterRegistry:
    """A registry with nightshift's built-in formatters."""
    reg = FormatterRegistry()
    reg.register("fits_exposure", f"{_PKG}._fits_exposure:FitsExposureFormatter", "astropy")
    reg.register("fits_table", f"{_PKG}._tables:FitsTableFormatter", "astropy")
    reg.register("parquet", f"{_PKG}._tables:ParquetFormatter", "pyarrow")
    reg.register("json", f"{_PKG}._plain:JsonFormatter")
    reg.register("yaml", f"{_PKG}._plain:YamlFormatter", "PyYAML")
    reg.register("numpy", f"{_PKG}._plain:NumpyFormatter", "numpy")
    reg.register("avro", f"{_PKG}._plain:AvroFormatter", "fastavro")
    reg.register("fits_wcs", f"{_PKG}._plain:FitsWcsFormatter", "astropy")
    reg.register("fits_image", f"{_PKG}._plain:FitsImageFormatter", "astropy")
    reg.register("fits_header", f"{_PKG}._plain:FitsHeaderFormatter", "astropy")
    reg.register("hdf5_exposure", f"{_PKG}._hdf5:Hdf5ExposureFormatter", "h5py")
    reg.register("hdf5_array", f"{_PKG}._hdf5:Hdf5ArrayFormatter", "h5py")
    reg.register("external_table", "nightshift.butler.external._formatters:ExternalTableFormatter", "pyarrow")
    reg.register("query_yaml", "nightshift.butler.external._formatters:QueryDefinitionFormatter", "PyYAML")
    return reg


_DEFAULT_STORAGE_CLASS_FORMATTERS: dict[str, str] = {
    "Exposure": "fits_exposure",
    "NumpyArray": "numpy",
    "Wcs": "fits_wcs",
    "Header": "fits_header",
    "AstropyTable": "fits_table",
    "ArrowTable": "parquet",
    "StructuredDataDict": "json",
    "StructuredDataList": "json",
    "AvroRecords": "avro",
    "ReferenceCatalogShard": "external_table",
    "QueryDefinition": "query_yaml",
}


class FormatterFactory:
    """Chooses and builds the formatter of a dataset type from configuration.

    Parameters
    ----------
    config : mapping, optional
        ``{"storage_classes": {...}, "dataset_types": {...}}`` (see module docs);
        merged over built-in defaults (one formatter per built-in storage class).
    registry : FormatterRegistry, optional
        Where names are resolved; the built-in registry by default.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, registry: FormatterRegistry | None = None) -> None:
        config = dict(config or {})
        unknown = set(config) - {"storage_classes", "dataset_types"}
        if unknown:
            raise FormatterError(f"formatter configuration has unknown key(s) {sorted(unknown)}")
        self.registry = registry if registry is not None else default_formatter_registry()
        self._by_sc = {k: FormatterSpec.coerce(v) for k, v in _DEFAULT_STORAGE_CLASS_FORMATTERS.items()}
        self._by_sc.update({k: FormatterSpec.coerce(v) for k, v in (config.get("storage_classes") or {}).items()})
        self._by_dt = {k: FormatterSpec.coerce(v) for k, v in (config.get("dataset_types") or {}).items()}
        self._cache: dict[str, Formatter] = {}

    def spec_for(self, dataset_type: DatasetType) -> FormatterSpec:
        """The configured formatter of a dataset type: by its (parent) name, then by storage class.

        Raises
        ------
        FormatterNotFoundError
            If neither is configured.
        """
        spec = self._by_dt.get(dataset_type.name) or self._by_dt.get(dataset_type.parent_name)
        if spec is None:
            spec = self._by_sc.get(dataset_type.storage_class)
        if spec is None:
            raise FormatterNotFoundError(
                f"no formatter configured for dataset type {dataset_type.name!r} or storage class "
                f"{dataset_type.storage_class!r}"
            )
        return spec

    def create(self, spec: FormatterSpec) -> Formatter:
        """A (cached) formatter instance for ``spec``."""
        key = spec.key if spec.options else spec.name  # no options: skip the canonical JSON
        formatter = self._cache.get(key)
        if formatter is None:
            formatter = self._cache[key] = self.registry.create(spec)
        return formatter

    def to_dict(self) -> dict[str, Any]:
        """Active configuration, for dumping (DMS-MWBT-REQ-0026)."""
        return {
            "storage_classes": {k: v.to_dict() for k, v in sorted(self._by_sc.items())},
            "dataset_types": {k: v.to_dict() for k, v in sorted(self._by_dt.items())},
        }
