"""Lazy re-exports for packages whose heavy parts (astropy, boto3, SQLAlchemy) load on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` that import ``names`` on first access.

    Parameters
    ----------
    package : str
        ``__name__`` of the package.
    names : mapping
        Public name → relative module that defines it (``"Butler": "._butler"``).

    Examples
    --------
    >>> __getattr__, __dir__ = lazy_exports(__name__, {"S3Backend": "._s3"})  # doctest: +SKIP
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
