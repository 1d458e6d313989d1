"""Synthetic DIA catalogues with every apdb.yaml column filled (some NULLs), for tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from nightshift.apdb import apdb_tables, make_source_ids

BANDS = np.array(list("ugrizy"), dtype=object)


def _fill(spec_name: str, n: int, rng: np.random.Generator, given: dict[str, np.ndarray]) -> pa.Table:
    spec = apdb_tables()[spec_name]
    arrays = []
    for col in spec.columns:
        if col.name in given:
            values = given[col.name]
            arrays.append(pa.array(values, type=col.arrow_type))
            continue
        mask = None
        if col.nullable and n:
            mask = rng.random(n) < 0.05
        if col.is_string:
            values = (BANDS[rng.integers(0, 6, n)] if col.length == 1 else np.array(["v1.2"] * n, dtype=object))
            arrays.append(pa.array(values.tolist(), type=pa.string(), mask=mask))
        elif col.datatype == "boolean":
            arrays.append(pa.array(rng.random(n) < 0.5, mask=mask))
        elif col.is_float:
            arrays.append(pa.array(rng.normal(size=n).astype(col.np_dtype)))
        else:
            arrays.append(pa.array(rng.integers(0, 100, n).astype(col.np_dtype), mask=mask))
    return pa.Table.from_arrays(arrays, schema=spec.arrow_schema())


def make_visit(
    visit: int,
    mjd: float,
    ra: np.ndarray,
    dec: np.ndarray,
    object_ids: np.ndarray,
    rng: np.random.Generator,
    *,
    detector: int = 0,
    forced: bool = True,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(objects, sources, forced sources) of one visit detecting objects ``object_ids`` at (ra, dec)."""
    n = len(ra)
    numbers = np.arange(n)
    src_ids = make_source_ids(visit, detector, numbers)
    common = {"ra": ra, "dec": dec}
    objects = _fill(
        "DiaObject",
        n,
        rng,
        {**common, "diaObjectId": object_ids, "nDiaSources": np.ones(n, dtype=np.int32)},
    )
    objects = objects.drop_columns(["validityStartMjdTai", "validityEndMjdTai"])
    sources = _fill(
        "DiaSource",
        n,
        rng,
        {
            **common,
            "diaSourceId": src_ids,
            "diaObjectId": object_ids,
            "visit": np.full(n, visit, dtype=np.int64),
            "detector": np.full(n, detector, dtype=np.int16),
            "midpointMjdTai": np.full(n, mjd),
            "timeProcessedMjdTai": np.full(n, mjd + 0.001),
        },
    )
    forced_t = _fill(
        "DiaForcedSource",
        n if forced else 0,
        rng,
        {
            **({} if not forced else common),
            "diaForcedSourceId": src_ids if forced else np.empty(0, np.int64),
            "diaObjectId": object_ids if forced else np.empty(0, np.int64),
            "visit": np.full(n if forced else 0, visit, dtype=np.int64),
            "detector": np.full(n if forced else 0, detector, dtype=np.int16),
            "midpointMjdTai": np.full(n if forced else 0, mjd),
            "timeProcessedMjdTai": np.full(n if forced else 0, mjd + 0.001),
            **({} if forced else {"ra": np.empty(0), "dec": np.empty(0)}),
        },
    )
    return objects, sources, forced_t


def field_positions(ra0: float, dec0: float, radius: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform positions in a small circle (flat-sky approximation, fine below a few degrees)."""
    r = radius * np.sqrt(rng.random(n))
    theta = rng.random(n) * 2 * np.pi
    dec = dec0 + r * np.sin(theta)
    ra = (ra0 + r * np.cos(theta) / np.cos(np.radians(dec))) % 360.0
    return ra, dec
