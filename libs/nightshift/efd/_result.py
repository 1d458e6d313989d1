"""What an EFD query returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["EfdResult"]


@dataclass(frozen=True)
class EfdResult:
    """The samples of one topic in one time window, from one form of the EFD.

    Attributes
    ----------
    topic : str
        Topic name.
    form : str
        ``"base"`` (samples at the native rate) or ``"transformed"`` (one row per visit).
    begin_ns, end_ns : int
        The window asked for, ``[begin, end)`` in TAI nanoseconds.
    columns : dict of str to numpy.ndarray
        ``time`` (TAI ns; a visit's mid-time in the transformed form) then
        the requested fields, in that order, in both forms; the transformed
        form adds ``instrument``, ``visit``, ``n_samples`` and ``<field>_min`` /
        ``<field>_max``.
    message : str
        Empty, or why there is nothing (``no samples of ...``).
    """

    topic: str
    form: str
    begin_ns: int
    end_ns: int
    columns: dict[str, NDArray[Any]]
    message: str = ""

    def __len__(self) -> int:
        return len(self.columns["time"])

    @property
    def empty(self) -> bool:
        """Whether the window holds no samples (``message`` then says so)."""
        return len(self) == 0

    @property
    def fields(self) -> list[str]:
        """The topic fields present (the columns after ``time`` that both forms have)."""
        return [c for c in self.columns if c != "time" and c not in _EXTRA and not c.endswith(("_min", "_max"))]

    def mean(self, field: str) -> float | None:
        """Mean of ``field`` over the rows (weighted by samples in the transformed form); None when empty."""
        values = np.asarray(self.columns[field], dtype=np.float64)
        if self.form == "transformed":
            weights = np.asarray(self.columns["n_samples"], dtype=np.float64)
            ok = np.isfinite(values) & (weights > 0)
            return float(np.average(values[ok], weights=weights[ok])) if ok.any() else None
        ok = np.isfinite(values)
        return float(values[ok].mean()) if ok.any() else None

    def to_astropy(self) -> Any:
        """The rows as an astropy Table (``time`` stays TAI nanoseconds)."""
        from astropy.table import Table

        return Table(dict(self.columns))


_EXTRA = {"instrument", "visit", "n_samples"}
