"""Named selections on catalogs: aliases to row subsets, without copying data (DMS-MWBT-REQ-0056).

A selection is (parent catalog dataset type, row filter, optional column
list), defined once -- in the repository's ``butler.yaml`` or through
:meth:`Selections.register` -- and read with the ``selection`` read parameter::

    # butler.yaml
    selections:
      bright_stars:
        dataset_type: src
        where: "psf_flux / psf_flux_err > 50 AND NOT flag_saturated"
        columns: [id, ra, dec, psf_flux]
        doc: PSF stars for astrometry

    stars = butler.get("src", data_id, parameters={"selection": "bright_stars"})
    ids = butler.get("src", data_id, parameters={"selection": "bright_stars", "columns": ["id"]})

Every task that names ``bright_stars`` reads the same subset of the same
stored bytes; nothing is written. The filter is the registry's ``where``
language over column names (plus ``+ - * /``), evaluated with numpy.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from ..formatters import UnsupportedComponentError
from ..registry._queries._ast import Node
from ._exceptions import SelectionColumnError, SelectionError, SelectionExpressionError, SelectionNotFoundError
from ._expression import evaluate, parse_filter, referenced_columns

if TYPE_CHECKING:
    from .._butler import Butler
    from .._dataset_ref import DatasetRef

__all__ = ["SELECTION_PARAMETER", "Selection", "Selections", "read_selection"]

#: The ``get`` parameter that names a selection.
SELECTION_PARAMETER = "selection"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS = {"dataset_type", "where", "columns", "doc"}


@dataclass(frozen=True)
class Selection:
    """A named subset of a catalog dataset type: rows matching ``where``, optionally only ``columns``.

    Parameters
    ----------
    name : str
        The alias tasks use (letters, digits, ``_``).
    dataset_type : str
        The parent catalog's dataset type name (table storage class).
    where : str
        Row filter over column names, e.g. ``"mag < 20 AND NOT flag_bad"``.
    columns : sequence of str, optional
        Columns of the subset (all if omitted).
    doc : str
        What the subset is for.

    Raises
    ------
    SelectionExpressionError
        The filter does not parse.
    SelectionError
        A bad name, dataset type or column list.
    """

    name: str
    dataset_type: str
    where: str
    columns: tuple[str, ...] | None = None
    doc: str = ""
    _tree: Node = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SelectionError(f"selection name {self.name!r} is invalid: use letters, digits and '_'")
        if not isinstance(self.dataset_type, str) or not _NAME.fullmatch(self.dataset_type):
            raise SelectionError(
                f"selection {self.name!r}: dataset_type {self.dataset_type!r} must be a parent dataset type name"
            )
        if self.columns is not None:
            if isinstance(self.columns, str) or not all(isinstance(c, str) for c in self.columns):
                raise SelectionError(f"selection {self.name!r}: columns must be a list of column names")
            cols = tuple(self.columns)
            if not cols or len(set(cols)) != len(cols):
                raise SelectionError(f"selection {self.name!r}: columns must be a non-empty list without repeats")
            object.__setattr__(self, "columns", cols)
        try:
            tree = parse_filter(self.where)
        except SelectionExpressionError as exc:
            raise SelectionExpressionError(f"selection {self.name!r}: {exc}") from None
        object.__setattr__(self, "_tree", tree)

    @property
    def filter_columns(self) -> tuple[str, ...]:
        """Columns the filter reads."""
        return referenced_columns(self._tree)

    def to_dict(self) -> dict[str, Any]:
        """The ``butler.yaml`` form (without the name)."""
        out: dict[str, Any] = {"dataset_type": self.dataset_type, "where": self.where}
        if self.columns is not None:
            out["columns"] = list(self.columns)
        if self.doc:
            out["doc"] = self.doc
        return out

    @classmethod
    def from_config(cls, name: str, body: Any) -> Selection:
        """From a ``butler.yaml`` entry.

        Raises
        ------
        SelectionError
            Unknown or missing keys (the message says which entry to fix).
        """
        if not isinstance(body, Mapping) or not {"dataset_type", "where"} <= set(body) or set(body) - _KEYS:
            raise SelectionError(
                f"butler.yaml selections.{name} needs dataset_type and where (optional: columns, doc); "
                f"got {sorted(body) if isinstance(body, Mapping) else body!r}"
            )
        cols = body.get("columns")
        return cls(str(name), body["dataset_type"], body["where"], tuple(cols) if cols is not None else None,
                   str(body.get("doc") or ""))

    def mask(self, table: Any, dataset_type: str | None = None) -> np.ndarray:
        """The boolean mask of the rows of ``table`` (astropy or pyarrow) in the selection.

        Raises
        ------
        SelectionColumnError
            The filter names a column the table does not have.
        SelectionExpressionError
            Operand types do not fit (e.g. a string column compared with a number).
        """
        names = list(_colnames(table))
        what = dataset_type or self.dataset_type

        def column(name: str) -> np.ndarray:
            if name not in names:
                raise SelectionColumnError(
                    f"selection {self.name!r} filters on column {name!r}, which {what} does not have; "
                    f"its columns are: {', '.join(names)}. Fix the selection's 'where'"
                )
            return _column_array(table, name)

        return evaluate(self._tree, column, len(table), self.where, f"selection {self.name!r}")


def _colnames(table: Any) -> Sequence[str]:
    names: Sequence[str] = table.colnames if hasattr(table, "colnames") else table.column_names
    return names


def _column_array(table: Any, name: str) -> np.ndarray:
    arr: np.ndarray  # a MaskedArray where values are missing
    if hasattr(table, "colnames"):  # astropy
        arr = np.ma.asarray(table[name])
    else:  # pyarrow
        chunked = table.column(name)
        mask = chunked.is_null().to_numpy(zero_copy_only=False)
        data = chunked.to_numpy(zero_copy_only=False)
        arr = np.ma.array(data, mask=mask) if mask.any() else np.asarray(data)
    if arr.dtype.kind == "S":
        arr = arr.astype(str)
    elif arr.dtype.kind == "O":
        arr = np.ma.array(np.array(["" if v is None else str(v) for v in np.ma.getdata(arr)]),
                          mask=np.ma.getmaskarray(arr) | np.array([v is None for v in np.ma.getdata(arr)], dtype=bool))
    if isinstance(arr, np.ma.MaskedArray) and not np.ma.getmaskarray(arr).any():
        arr = np.ma.getdata(arr)
    return arr


def _take(table: Any, mask: np.ndarray, columns: Sequence[str] | None) -> Any:
    if hasattr(table, "colnames"):
        out = table[mask]
        return out[list(columns)] if columns is not None else out
    import pyarrow as pa

    out = table.filter(pa.array(mask))
    return out.select(list(columns)) if columns is not None else out


class Selections(Mapping[str, Selection]):
    """The selections of one repository: from ``butler.yaml`` plus those registered in this process.

    Parameters
    ----------
    config : mapping, optional
        The ``selections:`` section of ``butler.yaml``.
    config_path : Path, optional
        ``butler.yaml`` itself, for :meth:`register` with ``persist=True``.

    Raises
    ------
    SelectionError
        An entry of the configuration is invalid (its name is in the message).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, config_path: Path | None = None) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise SelectionError("butler.yaml 'selections' must be a mapping of name to definition")
        self._by_name = {str(k): Selection.from_config(str(k), v) for k, v in (config or {}).items()}
        self._path = config_path

    def __getitem__(self, name: str) -> Selection:
        try:
            return self._by_name[name]
        except KeyError:
            raise SelectionNotFoundError(
                f"no selection called {name!r}; defined: {sorted(self._by_name) or 'none'} (define it under "
                "'selections:' in butler.yaml or with butler.selections.register)"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def __len__(self) -> int:
        return len(self._by_name)

    def register(
        self,
        name: str,
        dataset_type: str,
        where: str,
        columns: Sequence[str] | None = None,
        doc: str = "",
        *,
        persist: bool = False,
    ) -> Selection:
        """Define a selection (idempotent for an identical definition).

        Parameters
        ----------
        name, dataset_type, where, columns, doc
            See :class:`Selection`.
        persist : bool
            Also write it to ``butler.yaml`` so that other processes see it
            (read-modify-write of the file, replaced atomically).

        Raises
        ------
        SelectionError
            ``name`` is defined differently already: aliases do not change
            meaning under the tasks that use them; pick a new name.
        """
        sel = Selection(name, dataset_type, where, tuple(columns) if columns is not None else None, doc)
        old = self._by_name.get(name)
        if old is not None and old != sel:
            raise SelectionError(
                f"selection {name!r} is already defined as {old.to_dict()}; selections do not change meaning "
                "once defined: register the new subset under another name"
            )
        if persist:
            self._persist(sel)
        self._by_name[name] = sel
        return sel

    def _persist(self, sel: Selection) -> None:
        if self._path is None:
            raise SelectionError("these selections have no butler.yaml to persist to")
        config = yaml.safe_load(self._path.read_text()) or {}
        on_disk = (config.get("selections") or {}).get(sel.name)
        if on_disk is not None and Selection.from_config(sel.name, on_disk) != sel:
            raise SelectionError(f"{self._path} already defines selection {sel.name!r} differently: {on_disk}")
        config.setdefault("selections", {})[sel.name] = sel.to_dict()
        fd, tmp = tempfile.mkstemp(prefix=".butler-", suffix=".yaml", dir=self._path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(yaml.safe_dump(config, sort_keys=False))
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def for_dataset_type(self, dataset_type: str) -> list[Selection]:
        """The selections defined on one catalog dataset type."""
        return [s for _, s in sorted(self._by_name.items()) if s.dataset_type == dataset_type]


def read_selection(butler: Butler, ref: DatasetRef, parameters: Mapping[str, Any],
                   storage_class: str | None) -> Any:
    """``Butler.get`` with ``parameters={"selection": name, ...}``: the subset, read from the stored catalog.

    Only the columns of the subset and of its filter are read when the
    selection (or ``columns``) lists columns. ``columns`` narrows the
    selection's own column list.

    Raises
    ------
    SelectionNotFoundError, SelectionColumnError, SelectionExpressionError, SelectionError
        See :class:`Selection`; a selection read of another dataset type, or of a component.
    """
    params = dict(parameters)
    sel = butler.selections[params.pop(SELECTION_PARAMETER)]
    dt = ref.dataset_type
    if dt.component is not None:
        raise SelectionError(f"selection {sel.name!r} applies to whole catalogs, not to component {dt.name!r}")
    if dt.name != sel.dataset_type:
        raise SelectionError(
            f"selection {sel.name!r} is defined on dataset type {sel.dataset_type!r}, not {dt.name!r}"
        )
    wanted = params.pop("columns", None)
    if wanted is not None:
        wanted = list(wanted)
        if sel.columns is not None:
            extra = [c for c in wanted if c not in sel.columns]
            if extra:
                raise SelectionColumnError(
                    f"columns {extra} are not part of selection {sel.name!r} (its columns: {list(sel.columns)})")
    else:
        wanted = list(sel.columns) if sel.columns is not None else None
    read = None if wanted is None else list(dict.fromkeys([*wanted, *sel.filter_columns]))
    try:
        table = butler.datastore.get(ref, {**params, **({"columns": read} if read is not None else {})}, storage_class)
    except UnsupportedComponentError:
        # a listed column is missing: read the whole table once to name exactly which
        full = butler.datastore.get(ref, params or None, storage_class)
        missing = [c for c in read or () if c not in _colnames(full)]
        raise SelectionColumnError(
            f"selection {sel.name!r} uses column(s) {missing}, which {dt.name} {dict(ref.data_id)} does not have; "
            f"its columns are: {', '.join(_colnames(full))}. Fix the selection's 'where' or 'columns'"
        ) from None
    if not hasattr(table, "colnames") and not hasattr(table, "column_names"):
        raise SelectionError(f"selection {sel.name!r}: {dt.name} is not a table (storage class {dt.storage_class})")
    mask = sel.mask(table, dt.name)
    return _take(table, mask, wanted)
