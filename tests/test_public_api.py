"""Each package's public surface is exactly its curated ``__all__`` (names in private modules stay private)."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = [
    "nightshift",
    "nightshift.events",
    "nightshift.service",
    "nightshift_dev.devstack",
    "nightshift_dev.loadtest",
    "nightshift.butler",
    "nightshift.butler.dimensions",
    "nightshift.butler.registry",
    "nightshift.butler.datastores",
    "nightshift.butler.formatters",
    "nightshift.butler.external",
    "nightshift.sky",
    "nightshift.alerts",
    "nightshift.obs",
    "nightshift.obs.sim",
    "nightshift.efd",
    "nightshift.ap",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = {n for n in module.__all__ if not n.startswith("__")}
    missing = {n for n in exported if not hasattr(module, n)}  # resolves lazily imported names too
    assert missing == set(), f"{name}.__all__ names missing attributes"
    public = {n for n in dir(module) if not n.startswith("_") and not inspect.ismodule(getattr(module, n))}
    public -= {"annotations", "TYPE_CHECKING", "Any"}  # typing helpers of the module itself
    assert public - exported == set(), f"{name} exposes names not in __all__"


def test_the_root_docstring_lists_every_subpackage() -> None:
    import pkgutil

    import nightshift

    packages = {m.name for m in pkgutil.iter_modules(nightshift.__path__) if m.ispkg and not m.name.startswith("_")}
    doc = nightshift.__doc__ or ""
    listed = {line.strip() for line in doc.splitlines() if line.strip() in packages and not line.startswith(" ")}
    assert packages - listed == set(), "add these subpackages to the docstring of libs/nightshift/__init__.py"
