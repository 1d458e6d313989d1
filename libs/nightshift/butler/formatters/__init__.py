"""Formatters: one file format each, chosen per dataset type / storage class by configuration.

Built in (imported lazily, by name): ``fits_exposure``, ``fits_table``,
``parquet``, ``json``, ``yaml``, ``numpy``, ``avro``, ``fits_image``, ``fits_wcs``,
``fits_header``. See :class:`FormatterRegistry` to add more.

Importing this package is cheap: the exposure model and its delegates
(``Box``, ``Exposure``, ... over numpy and astropy) are imported on first
attribute access (PEP 562), and each formatter module with its third-party
library (astropy, pyarrow, fastavro) only when that formatter is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import Formatter
from ._exceptions import (
    FormatterDependencyError,
    FormatterError,
    FormatterNotFoundError,
    UnsupportedComponentError,
    UnsupportedParameterError,
)
from ._registry import FormatterFactory, FormatterRegistry, FormatterSpec, default_formatter_registry

if TYPE_CHECKING:
    from ._exposure import ArrayDelegate, Box, Exposure, ExposureDelegate, TableDelegate

_LAZY = {name: "._exposure" for name in ("ArrayDelegate", "Box", "Exposure", "ExposureDelegate", "TableDelegate")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ArrayDelegate",
    "Box",
    "Exposure",
    "ExposureDelegate",
    "Formatter",
    "FormatterDependencyError",
    "FormatterError",
    "FormatterFactory",
    "FormatterNotFoundError",
    "FormatterRegistry",
    "FormatterSpec",
    "TableDelegate",
    "UnsupportedComponentError",
    "UnsupportedParameterError",
    "default_formatter_registry",
]
