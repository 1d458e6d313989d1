"""Formatters: one file format each, chosen per dataset type / storage class by configuration.

Built in (imported lazily, by name): ``fits_exposure``, ``fits_table``,
``parquet``, ``json``, ``yaml``, ``numpy``, ``avro``, ``fits_image``, ``fits_wcs``,
``fits_header``, ``hdf5_exposure``, ``hdf5_array``. See :class:`FormatterRegistry` to add more.

Importing this package is cheap: the exposure model and its delegates
(``Box``, ``Exposure``, ... over numpy and astropy) are imported on first
attribute access (PEP 562), and each formatter module with its third-party
library (astropy, pyarrow, fastavro, h5py) only when that formatter is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports as _lazy_exports
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


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)


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
