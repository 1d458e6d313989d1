"""The simulated sky: a static field of stars and galaxies, variable stars and transients, fixed by a seed.

The sky is cut into HEALPix cells (nested, order 9, ~47 arcmin² each); the
objects of a cell are drawn from a random generator seeded by ``(seed,
cell)``, so every visit that covers a cell sees the same objects wherever its
detectors fall. Positions are uniform within the cell (centres of random
order-20 sub-cells, which have equal areas).

Magnitudes are in the ``r`` band with a colour that shifts them in the other
bands. Variable stars (5% of stars) vary sinusoidally; transients appear
(a step), fade (exponential decline) or rise (exponential rise to a plateau)
around a time ``t0`` within the simulated season.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["BAND_OFFSETS", "CELL_ORDER", "SkyCatalog", "sky_catalog"]

CELL_ORDER = 9
_SUB_ORDER = 20
_CELL_ARCMIN2 = 4 * np.pi * (180 * 60 / np.pi) ** 2 / (12 * 4**CELL_ORDER)
STAR_DENSITY = 4.0  # per arcmin², r < 25
GALAXY_DENSITY = 12.0  # per arcmin², r < 25.5
TRANSIENT_DENSITY = 0.05  # per arcmin² per season
SEASON = (61340.0, 61420.0)  # MJD range of transient t0: 2026-10-27 .. 2027-01-15, around the default nights
#: mag(band) = mag_r + offset * colour (colour ~ g-r)
BAND_OFFSETS = {"u": 2.5, "g": 1.0, "r": 0.0, "i": -0.4, "z": -0.6, "y": -0.7, "white": 0.0}
_KINDS = np.array(["appearing", "fading", "rising"])


@dataclass
class SkyCatalog:
    """Objects in some cells: parallel arrays (degrees, r magnitudes)."""

    kind: np.ndarray  # "star" | "galaxy"
    id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    mag_r: np.ndarray
    colour: np.ndarray
    hlr: np.ndarray  # galaxy half-light radius (arcsec); 0 for stars
    e1: np.ndarray
    e2: np.ndarray
    var_amp: np.ndarray  # mag amplitude (0: constant)
    var_period: np.ndarray  # days
    var_phase: np.ndarray
    t_id: np.ndarray  # transients
    t_ra: np.ndarray
    t_dec: np.ndarray
    t_kind: np.ndarray
    t_t0: np.ndarray
    t_peak: np.ndarray  # peak r mag
    t_tau: np.ndarray  # days

    def magnitudes(self, band: str, mjd: float) -> np.ndarray:
        """Static and variable objects' magnitudes in ``band`` at ``mjd``."""
        base = self.mag_r + BAND_OFFSETS.get(band, 0.0) * self.colour
        phase = 2 * np.pi * mjd / np.maximum(self.var_period, 1e-3) + self.var_phase
        out: np.ndarray = base + self.var_amp * np.sin(phase)
        return out

    def transient_fluxes(self, mjd: float) -> np.ndarray:
        """Transients' flux at ``mjd`` as a fraction of their peak (0 before appearing)."""
        dt = mjd - self.t_t0
        frac = np.zeros_like(dt)
        frac[(self.t_kind == "appearing") & (dt >= 0)] = 1.0
        fading = (self.t_kind == "fading") & (dt >= 0)
        frac[fading] = np.exp(-dt[fading] / self.t_tau[fading])
        rising = self.t_kind == "rising"
        frac[rising] = np.where(dt[rising] >= 0, 1.0, np.exp(np.minimum(dt[rising], 0) / self.t_tau[rising]))
        return frac


def _power_law(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Magnitudes with N(<m) ∝ 10^(slope m) between lo and hi."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.random(n) * (b - a)) / slope


def _positions(rng: np.random.Generator, cell: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    from cdshealpix import nested

    sub = cell * 4 ** (_SUB_ORDER - CELL_ORDER) + rng.integers(0, 4 ** (_SUB_ORDER - CELL_ORDER), n, dtype=np.uint64)
    lon, lat = nested.healpix_to_lonlat(sub.astype(np.uint64), _SUB_ORDER)
    return np.asarray(lon.deg, dtype=float), np.asarray(lat.deg, dtype=float)


@functools.lru_cache(maxsize=4096)
def _cell(seed: int, cell: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, cell, 1])
    ns, ng = rng.poisson(STAR_DENSITY * _CELL_ARCMIN2), rng.poisson(GALAXY_DENSITY * _CELL_ARCMIN2)
    n = ns + ng
    ra, dec = _positions(rng, cell, n)
    var = (rng.random(n) < 0.05) & (np.arange(n) < ns)
    trng = np.random.default_rng([seed, cell, 2])
    nt = trng.poisson(TRANSIENT_DENSITY * _CELL_ARCMIN2)
    t_ra, t_dec = _positions(trng, cell, nt)
    return {
        "kind": np.where(np.arange(n) < ns, "star", "galaxy"),
        "id": cell * 100_000 + np.arange(n, dtype=np.int64),
        "ra": ra, "dec": dec,
        "mag_r": np.concatenate([_power_law(rng, ns, 16.0, 25.0, 0.3), _power_law(rng, ng, 19.0, 25.5, 0.35)]),
        "colour": rng.normal(0.6, 0.3, n),
        "hlr": np.concatenate([np.zeros(ns), rng.lognormal(np.log(0.5), 0.4, ng)]),
        "e1": np.concatenate([np.zeros(ns), rng.normal(0, 0.2, ng)]).clip(-0.7, 0.7),
        "e2": np.concatenate([np.zeros(ns), rng.normal(0, 0.2, ng)]).clip(-0.7, 0.7),
        "var_amp": np.where(var, rng.uniform(0.1, 1.0, n), 0.0),
        "var_period": np.where(var, 10 ** rng.uniform(-1, 1, n), 1.0),
        "var_phase": rng.uniform(0, 2 * np.pi, n),
        "t_id": cell * 1000 + np.arange(nt, dtype=np.int64),
        "t_ra": t_ra, "t_dec": t_dec,
        "t_kind": _KINDS[trng.integers(0, 3, nt)],
        "t_t0": trng.uniform(*SEASON, nt),
        "t_peak": trng.uniform(19.0, 24.0, nt),
        "t_tau": trng.uniform(5.0, 30.0, nt),
    }


def sky_catalog(seed: int, ra: float, dec: float, radius: float) -> SkyCatalog:
    """The objects of every cell within ``radius`` degrees of (``ra``, ``dec``)."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    cells, _, _ = nested.cone_search(Longitude(ra * u.deg), Latitude(dec * u.deg), radius * u.deg, CELL_ORDER,
                                     flat=True)
    parts = [_cell(seed, int(c)) for c in np.unique(cells)]
    fields = SkyCatalog.__dataclass_fields__
    return SkyCatalog(**{k: np.concatenate([p[k] for p in parts]) if parts else np.array([]) for k in fields})
