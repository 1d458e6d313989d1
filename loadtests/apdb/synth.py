"""A synthetic sky and an overlapping field sequence with full-width Rubin APDB rows.

Objects are scattered uniformly over a strip of sky along the equator; visit
``i`` points at field centre ``i % centres`` (centres 1.5 degrees apart, so
3.5-degree fields overlap), detects ``sources_per_visit`` of the objects in
its field (one DiaSource and one new DiaObject version each) and measures
``forced_per_visit`` others (DiaForcedSources). Every apdb.yaml column is
filled, as in the reference measurements of dax_apdb.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from nightshift.apdb import Circle, apdb_tables, make_source_ids

SPACING_DEG = 1.5
DETECTORS = 189


@dataclass
class Sky:
    """The true objects of the benchmark, and its visits."""

    centres: int
    density: float  # objects per square degree
    radius: float = 1.75
    sources_per_visit: int = 10_000
    forced_per_visit: int = 10_000
    seed: int = 12345
    mjd0: float = 60300.0
    cadence_days: float = 1.0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        width = (self.centres - 1) * SPACING_DEG + 2 * self.radius + 0.2
        height = 2 * self.radius + 0.2
        n = int(self.density * width * height)
        self.ra = (rng.random(n) * width - self.radius - 0.1) % 360.0
        self.dec = rng.random(n) * height - height / 2
        self.ids = np.arange(1, n + 1, dtype=np.int64)

    def centre(self, i: int) -> tuple[float, float]:
        c = i % self.centres
        return (c * SPACING_DEG) % 360.0, 0.0

    def region(self, i: int) -> Circle:
        ra, dec = self.centre(i)
        return Circle(ra, dec, self.radius)

    def mjd(self, i: int) -> float:
        return self.mjd0 + i * self.cadence_days

    def visit(self, i: int) -> tuple[float, pa.Table, pa.Table, pa.Table]:
        """(visit time, objects, sources, forced sources) of visit ``i``."""
        rng = np.random.default_rng(self.seed + 1 + i)
        inside = np.flatnonzero(self.region(i).contains(self.ra, self.dec))
        rng.shuffle(inside)
        det = inside[: self.sources_per_visit]
        forced = inside[self.sources_per_visit : self.sources_per_visit + self.forced_per_visit]
        if forced.size < self.forced_per_visit:
            forced = inside[: self.forced_per_visit]
        mjd = self.mjd(i)
        visit_id = 1000 + i
        n = det.size
        detector = (np.arange(n) * DETECTORS // max(n, 1)).astype(np.int16)
        number = np.arange(n) - np.searchsorted(detector, detector)
        src_ids = make_source_ids(visit_id, detector, number)
        jitter = 0.1 / 3600.0
        ra = self.ra[det] + rng.normal(scale=jitter, size=n)
        dec = self.dec[det] + rng.normal(scale=jitter, size=n)
        ra %= 360.0
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
        )
        return mjd, objects, sources, forced_t


_BANDS = np.array(list("ugrizy"), dtype=object)


def _fill(table: str, n: int, rng: np.random.Generator, given: dict[str, np.ndarray], skip: set[str] = frozenset()) -> pa.Table:  # type: ignore[assignment]
    spec = apdb_tables()[table]
    arrays, fields = [], []
    for col in spec.columns:
        if col.name in skip:
            continue
        if col.name in given:
            arrays.append(pa.array(given[col.name], type=col.arrow_type))
        elif col.is_string:
            arrays.append(pa.array((_BANDS[rng.integers(0, 6, n)] if col.length == 1 else np.full(n, "v1", object)).tolist(), pa.string()))
        elif col.datatype == "boolean":
            arrays.append(pa.array(rng.random(n) < 0.1))
        elif col.is_float:
            arrays.append(pa.array(rng.random(n).astype(col.np_dtype)))
        else:
            arrays.append(pa.array(rng.integers(0, 100, n).astype(col.np_dtype)))
        fields.append(pa.field(col.name, col.arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
