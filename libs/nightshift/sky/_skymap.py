"""Sky maps: tilings of the sky into tracts and patches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._pixelization import cell_range

__all__ = ["HealpixSkyMap", "PatchInfo", "TractInfo"]


@dataclass(frozen=True)
class PatchInfo:
    """One patch: its index in the tract, its vertices and common-order pixel range."""

    id: int
    vertices: list[tuple[float, float]]
    skypix_range: tuple[int, int]
    cell_x: int
    cell_y: int


@dataclass(frozen=True)
class TractInfo:
    """One tract: its id, vertices, common-order pixel range and patches."""

    id: int
    vertices: list[tuple[float, float]]
    skypix_range: tuple[int, int]
    patches: tuple[PatchInfo, ...]


@dataclass(frozen=True)
class HealpixSkyMap:
    """A sky map whose tracts are HEALPix cells and patches their sub-cells.

    Parameters
    ----------
    name : str
        Sky map name (the ``skymap`` data ID value).
    tract_order : int
        HEALPix order of tracts (order 3: 768 tracts of ~7.3 deg).
    patch_levels : int
        Patches per tract are ``4 ** patch_levels`` sub-cells.
    tracts : tuple of int, optional
        Restrict to these tract ids (e.g. a survey footprint); all by default.
    """

    name: str
    tract_order: int = 3
    patch_levels: int = 2
    tracts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a sky map needs a name")
        if not 0 <= self.tract_order <= 12 or not 0 <= self.patch_levels <= 6:
            raise ValueError(
                f"sky map {self.name!r}: tract_order must be in [0, 12] and patch_levels in [0, 6]"
            )
        n = 12 * 4**self.tract_order
        for t in self.tracts or ():
            if not 0 <= t < n:
                raise ValueError(f"sky map {self.name!r}: tract {t} outside [0, {n})")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HealpixSkyMap:
        """Build from a mapping such as a YAML document.

        ``{"name": "hpx3", "kind": "healpix", "tract_order": 3, "patch_levels": 2}``
        """
        kind = config.get("kind", "healpix")
        if kind != "healpix":
            raise ValueError(f"unknown sky map kind {kind!r}; supported: 'healpix'")
        unknown = set(config) - {"name", "kind", "tract_order", "patch_levels", "tracts"}
        if unknown:
            raise ValueError(f"unknown sky map config key(s) {sorted(unknown)}")
        tracts = config.get("tracts")
        return cls(
            name=str(config["name"]),
            tract_order=int(config.get("tract_order", 3)),
            patch_levels=int(config.get("patch_levels", 2)),
            tracts=tuple(int(t) for t in tracts) if tracts is not None else None,
        )

    @property
    def kind(self) -> str:
        return "healpix"

    @property
    def hash(self) -> str:
        """A digest of the geometry definition (same tiling -> same hash)."""
        text = f"healpix;{self.tract_order};{self.patch_levels}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def tract_max(self) -> int:
        count: int = 12 * 4**self.tract_order  # int ** int is typed Any (a negative power is a float)
        return count

    @property
    def patch_max(self) -> int:
        count: int = 4**self.patch_levels
        return count

    def __iter__(self) -> Iterator[TractInfo]:
        ids = self.tracts if self.tracts is not None else range(self.tract_max)
        for t in ids:
            yield self.tract(t)

    def tract(self, tract_id: int) -> TractInfo:
        """Geometry of one tract."""
        patch_order = self.tract_order + self.patch_levels
        patches = []
        side = 2**self.patch_levels
        for p in range(self.patch_max):
            pix = (tract_id << (2 * self.patch_levels)) + p
            x, y = _deinterleave(p)
            patches.append(
                PatchInfo(p, _vertices(pix, patch_order), cell_range(pix, patch_order), x % side, y % side)
            )
        return TractInfo(
            tract_id, _vertices(tract_id, self.tract_order), cell_range(tract_id, self.tract_order), tuple(patches)
        )


def _deinterleave(p: int) -> tuple[int, int]:
    x = y = 0
    bit = 0
    while p:
        x |= (p & 1) << bit
        y |= ((p >> 1) & 1) << bit
        p >>= 2
        bit += 1
    return x, y


def _vertices(pixel: int, order: int) -> list[tuple[float, float]]:
    import numpy as np
    from cdshealpix.nested import vertices

    lon, lat = vertices(np.array([pixel], dtype=np.uint64), order)
    return [(float(a), float(b)) for a, b in zip(lon.deg[0], lat.deg[0], strict=True)]
