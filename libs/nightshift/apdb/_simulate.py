"""Synthetic DIA catalogues with every ``apdb.yaml`` column filled: tests, benchmark, demo.

Two levels:

- :func:`simulate_visit` — one visit's (objects, sources, forced sources) for
  given object positions and ids;
- :class:`SkyField` — a fixed synthetic sky (objects scattered over a strip of
  the equator) and an overlapping field sequence: visit ``i`` points at centre
  ``i % centres`` (centres 1.5° apart), detects ``sources_per_visit`` objects of
  its field (one DiaSource and one new DiaObject version each, spread over 189
  detectors) and measures ``forced_per_visit`` others (DiaForcedSources).

A small visit cycle (as in the demo)::

    from nightshift.apdb import AsyncApdb, SkyField

    sky = SkyField(centres=3, density=200, sources_per_visit=300, forced_per_visit=300)
    async with AsyncApdb(settings) as apdb:
        await apdb.create(drop=True)
        v = sky.visit(0)
        stored = await apdb.store(v.mjd, v.objects, v.sources, v.forced_sources)
        pre = await apdb.preload(sky.region(1), sky.history_start(1))
        print(stored.dia_sources, pre.objects.num_rows, pre.sources.num_rows)

Everything is deterministic given ``seed`` (and the visit index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import ArrayLike, NDArray

from ..sky import Circle
from ._ids import make_source_ids
from ._schema import apdb_tables

__all__ = ["SimulatedVisit", "SkyField", "random_positions", "simulate_visit"]

#: Distance between neighbouring field centres of a :class:`SkyField` (degrees).
SPACING_DEG = 1.5
#: Detectors a visit's sources are spread over (LSSTCam science detectors).
DETECTORS = 189
_BANDS = np.array(list("ugrizy"), dtype=object)


@dataclass(frozen=True)
class SimulatedVisit:
    """One visit's rows, ready for ``AsyncApdb.store(v.mjd, v.objects, v.sources, v.forced_sources)``."""

    index: int
    visit: int
    mjd: float
    region: Circle
    objects: pa.Table
    sources: pa.Table
    forced_sources: pa.Table


def random_positions(
    ra0: float, dec0: float, radius: float, n: int, rng: np.random.Generator | int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``n`` uniform (ra, dec) in degrees inside a small circle (flat-sky approximation, fine below a few degrees)."""
    rng = np.random.default_rng(rng)
    r = radius * np.sqrt(rng.random(n))
    theta = rng.random(n) * 2 * np.pi
    dec = dec0 + r * np.sin(theta)
    ra = (ra0 + r * np.cos(theta) / np.cos(np.radians(dec))) % 360.0
    return ra, dec


def simulate_visit(
    visit: int,
    mjd: float,
    ra: ArrayLike,
    dec: ArrayLike,
    object_ids: ArrayLike,
    *,
    rng: np.random.Generator | int | None = None,
    detector: int | ArrayLike = 0,
    forced: bool = True,
    null_fraction: float = 0.05,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(objects, sources, forced sources) of one visit detecting ``object_ids`` at (``ra``, ``dec``).

    Parameters
    ----------
    visit : int
        Visit id; source ids are ``make_source_ids(visit, detector, number)``.
    mjd : float
        Visit time, MJD TAI (``midpointMjdTai`` of the sources).
    ra, dec : array-like of float
        Positions in degrees, one per object.
    object_ids : array-like of int
        DiaObject ids, one per position.
    rng : numpy Generator or int seed, optional
        Source of the filler values of the other columns.
    detector : int or array-like of int
        Detector of every source (one value, or one per source).
    forced : bool
        Also measure a forced source of every object (else an empty table).
    null_fraction : float
        Share of NULLs in each nullable non-float filler column (floats are
        never NULL here: a NULL float reads back as NaN).

    Returns
    -------
    tuple of pyarrow.Table
        DiaObject (without the validity columns: ``store`` fills them),
        DiaSource and DiaForcedSource tables with every ``apdb.yaml`` column.
    """
    rng = np.random.default_rng(rng)
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    ids = np.asarray(object_ids, dtype=np.int64)
    n = ra.size
    det = np.broadcast_to(np.asarray(detector, dtype=np.int16), (n,))
    # Source number within its detector (detectors given in ascending order), else the row number.
    number = np.arange(n) - np.searchsorted(det, det) if np.all(det[:-1] <= det[1:]) else np.arange(n)
    src_ids = make_source_ids(visit, det, number)
    objects = _fill(
        "DiaObject",
        n,
        rng,
        {"diaObjectId": ids, "ra": ra, "dec": dec, "nDiaSources": np.ones(n, dtype=np.int32)},
        skip={"validityStartMjdTai", "validityEndMjdTai"},
        null_fraction=null_fraction,
    )
    per_source = {
        "diaObjectId": ids,
        "ra": ra,
        "dec": dec,
        "visit": np.full(n, visit, dtype=np.int64),
        "detector": det,
        "midpointMjdTai": np.full(n, mjd),
        "timeProcessedMjdTai": np.full(n, mjd + 0.001),
    }
    sources = _fill("DiaSource", n, rng, {**per_source, "diaSourceId": src_ids}, null_fraction=null_fraction)
    m = n if forced else 0
    forced_t = _fill(
        "DiaForcedSource",
        m,
        rng,
        {**{k: v[:m] for k, v in per_source.items()}, "diaForcedSourceId": src_ids[:m]},
        null_fraction=null_fraction,
    )
    return objects, sources, forced_t


@dataclass
class SkyField:
    """A synthetic sky and an overlapping sequence of ~3.5° fields along the equator.

    Parameters
    ----------
    centres : int
        Distinct field centres, ``SPACING_DEG`` apart; visit ``i`` points at centre ``i % centres``.
    density : float
        True objects per square degree (5,200 gives ~50,000 per 3.5° field).
    radius : float
        Field radius in degrees.
    sources_per_visit, forced_per_visit : int
        DiaSources (= new DiaObject versions) and DiaForcedSources per visit.
    seed : int
        Seed of the sky and of every visit.
    mjd0, cadence_days : float
        Time (MJD TAI) of visit 0 and days between visits.
    null_fraction : float
        Share of NULLs in nullable filler columns (0: every column filled).
    first_visit_id : int
        Visit id of visit index 0.
    """

    centres: int = 3
    density: float = 200.0
    radius: float = 1.75
    sources_per_visit: int = 300
    forced_per_visit: int = 300
    seed: int = 12345
    mjd0: float = 60300.0
    cadence_days: float = 1.0
    null_fraction: float = 0.0
    first_visit_id: int = 1000
    ra: NDArray[np.float64] = field(init=False, repr=False)
    dec: NDArray[np.float64] = field(init=False, repr=False)
    ids: NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        width = (self.centres - 1) * SPACING_DEG + 2 * self.radius + 0.2
        height = 2 * self.radius + 0.2
        n = int(self.density * width * height)
        self.ra = (rng.random(n) * width - self.radius - 0.1) % 360.0
        self.dec = rng.random(n) * height - height / 2
        self.ids = np.arange(1, n + 1, dtype=np.int64)

    def centre(self, i: int) -> tuple[float, float]:
        """(ra, dec) in degrees of visit ``i``'s field centre."""
        return ((i % self.centres) * SPACING_DEG) % 360.0, 0.0

    def region(self, i: int) -> Circle:
        """The field of visit ``i``."""
        ra, dec = self.centre(i)
        return Circle(ra, dec, self.radius)

    def mjd(self, i: int) -> float:
        """Time (MJD TAI) of visit ``i``."""
        return self.mjd0 + i * self.cadence_days

    def history_start(self, i: int, days: float = 365.0) -> float:
        """``since`` of a preload for visit ``i``: ``days`` (12 months) before it."""
        return self.mjd(i) - days

    def visit(self, i: int) -> SimulatedVisit:
        """The rows of visit ``i`` (deterministic)."""
        rng = np.random.default_rng(self.seed + 1 + i)
        region = self.region(i)
        inside = np.flatnonzero(region.contains(self.ra, self.dec))
        rng.shuffle(inside)
        det = inside[: self.sources_per_visit]
        forced = inside[self.sources_per_visit : self.sources_per_visit + self.forced_per_visit]
        if forced.size < self.forced_per_visit:
            forced = inside[: self.forced_per_visit]
        mjd = self.mjd(i)
        visit_id = self.first_visit_id + i
        n = det.size
        detector = (np.arange(n) * DETECTORS // max(n, 1)).astype(np.int16)
        number = np.arange(n) - np.searchsorted(detector, detector)
        src_ids = make_source_ids(visit_id, detector, number)
        jitter = 0.1 / 3600.0
        ra = (self.ra[det] + rng.normal(scale=jitter, size=n)) % 360.0
        dec = self.dec[det] + rng.normal(scale=jitter, size=n)
        nf = self.null_fraction
        objects = _fill(
            "DiaObject",
            n,
            rng,
            {
                "diaObjectId": self.ids[det],
                "ra": self.ra[det],
                "dec": self.dec[det],
                "nDiaSources": rng.integers(1, 50, n).astype(np.int32),
                "lastDiaSourceMjdTai": np.full(n, mjd),
            },
            skip={"validityStartMjdTai", "validityEndMjdTai"},
            null_fraction=nf,
        )
        sources = _fill(
            "DiaSource",
            n,
            rng,
            {
                "diaSourceId": src_ids,
                "visit": np.full(n, visit_id, dtype=np.int64),
                "detector": detector,
                "diaObjectId": self.ids[det],
                "ra": ra,
                "dec": dec,
                "midpointMjdTai": np.full(n, mjd),
                "timeProcessedMjdTai": np.full(n, mjd + 0.0003),
            },
            null_fraction=nf,
        )
        m = forced.size
        fdet = (np.arange(m) * DETECTORS // max(m, 1)).astype(np.int16)
        fnum = np.arange(m) - np.searchsorted(fdet, fdet)
        forced_t = _fill(
            "DiaForcedSource",
            m,
            rng,
            {
                "diaForcedSourceId": make_source_ids(visit_id, fdet, fnum + 500_000),
                "diaObjectId": self.ids[forced],
                "ra": self.ra[forced],
                "dec": self.dec[forced],
                "visit": np.full(m, visit_id, dtype=np.int64),
                "detector": fdet,
                "midpointMjdTai": np.full(m, mjd),
                "timeProcessedMjdTai": np.full(m, mjd + 0.0003),
            },
            null_fraction=nf,
        )
        return SimulatedVisit(i, visit_id, mjd, region, objects, sources, forced_t)


def _fill(
    table: str,
    n: int,
    rng: np.random.Generator,
    given: dict[str, NDArray[Any]],
    *,
    skip: set[str] | frozenset[str] = frozenset(),
    null_fraction: float = 0.0,
) -> pa.Table:
    """A ``table`` of ``n`` rows: ``given`` columns as given, the others random (some NULL)."""
    spec = apdb_tables()[table]
    arrays, fields = [], []
    for col in spec.columns:
        if col.name in skip:
            continue
        if col.name in given:
            arrays.append(pa.array(given[col.name], type=col.arrow_type))
        else:
            mask = rng.random(n) < null_fraction if (col.nullable and null_fraction > 0 and n) else None
            if col.is_string:
                values = _BANDS[rng.integers(0, 6, n)] if col.length == 1 else np.full(n, "v1", object)
                arrays.append(pa.array(values.tolist(), pa.string(), mask=mask))
            elif col.datatype == "boolean":
                arrays.append(pa.array(rng.random(n) < 0.1, mask=mask))
            elif col.is_float:  # never NULL: a NULL float reads back as NaN
                arrays.append(pa.array(rng.random(n).astype(col.np_dtype)))
            else:
                arrays.append(pa.array(rng.integers(0, 100, n).astype(col.np_dtype), mask=mask))
        fields.append(pa.field(col.name, col.arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
