"""Formatters: one file format each, chosen per dataset type / storage class by configuration.

Built in (imported lazily, by name): ``fits_exposure``, ``fits_table``,
``parquet``, ``json``, ``yaml``, ``numpy``, ``avro``, ``fits_image``, ``fits_wcs``,
``fits_header``. See :class:`FormatterRegistry` to add more.
"""

from ._base import Formatter
from ._exceptions import (
    FormatterDependencyError,
    FormatterError,
    FormatterNotFoundError,
    UnsupportedComponentError,
    UnsupportedParameterError,
)
from ._exposure import ArrayDelegate, Box, Exposure, ExposureDelegate, TableDelegate
from ._registry import FormatterFactory, FormatterRegistry, FormatterSpec, default_formatter_registry

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
