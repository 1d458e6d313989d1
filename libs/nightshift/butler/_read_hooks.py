"""Read hooks: how plug-ins serve some ``Butler.get`` calls without the core knowing them.

A read hook takes over a ``get`` either for a read parameter (e.g.
``parameters={"selection": name}``) or for a storage class (e.g. a stored
``QueryDefinition`` whose ``get`` runs the query). Plug-ins register their
hooks into :data:`read_hooks` when their module is imported; the registry
imports the modules named in ``plugins`` the first time it is asked, as
fsspec's ``known_implementations`` and astropy's I/O registry do, so the
core names a module, never its functions::

    from nightshift.butler import read_hooks

    def read_thumbnail(butler, ref, parameters, storage_class):
        ...

    read_hooks.register(read_thumbnail, parameter="thumbnail")

Parameter hooks are tried before storage-class hooks; a storage-class hook
serves reads of the whole dataset (a component is read by the datastore).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._storage_class import StorageClassError

if TYPE_CHECKING:
    from ._butler import Butler
    from ._dataset_ref import DatasetRef

__all__ = ["ReadHook", "ReadHooks", "read_hooks"]

ReadHook = Callable[["Butler", "DatasetRef", "Mapping[str, Any] | None", "str | None"], Any]
"""``hook(butler, ref, parameters, storage_class) -> object``: what ``Butler.get`` returns."""


class ReadHooks:
    """Read hooks keyed by read-parameter name and by storage class name.

    Parameters
    ----------
    plugins : iterable of str
        Modules imported on first lookup; importing one registers its hooks.
    """

    def __init__(self, plugins: Iterable[str] = ()) -> None:
        self.plugins = list(plugins)
        self._by_parameter: dict[str, ReadHook] = {}
        self._by_storage_class: dict[str, ReadHook] = {}
        self._loaded = False
        self._lock = threading.RLock()  # a plug-in may read while it registers

    def register(self, hook: ReadHook, *, parameter: str | None = None, storage_class: str | None = None) -> None:
        """Serve reads that pass ``parameter``, or reads of datasets of ``storage_class``, with ``hook``.

        Raises
        ------
        StorageClassError
            Neither or both keys given, or the key already has another hook.
        """
        if parameter is not None and storage_class is None:
            table, key = self._by_parameter, parameter
        elif storage_class is not None and parameter is None:
            table, key = self._by_storage_class, storage_class
        else:
            raise StorageClassError("register a read hook for exactly one of parameter= or storage_class=")
        if table.get(key, hook) is not hook:
            raise StorageClassError(f"a read hook for {key!r} is registered already ({table[key]!r})")
        table[key] = hook

    def unregister(self, *, parameter: str | None = None, storage_class: str | None = None) -> None:
        """Remove the hook of ``parameter`` or ``storage_class`` (no error if there is none)."""
        if parameter is not None:
            self._by_parameter.pop(parameter, None)
        if storage_class is not None:
            self._by_storage_class.pop(storage_class, None)

    def find(self, ref: DatasetRef, parameters: Mapping[str, Any] | None) -> ReadHook | None:
        """The hook that serves this read, or None for an ordinary datastore read."""
        self._load_plugins()
        for name in parameters or ():
            hook = self._by_parameter.get(name)
            if hook is not None:
                return hook
        if ref.dataset_type.component is None:
            return self._by_storage_class.get(ref.dataset_type.storage_class)
        return None

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                for module in self.plugins:
                    importlib.import_module(module)
                self._loaded = True


read_hooks = ReadHooks(plugins=["nightshift.butler.external"])
"""The read hooks every :class:`~nightshift.butler.Butler` consults."""
