"""A simulated night: a pointing sequence, its raws, the injected truth and the ``nextVisit`` payloads.

Pointing sequence: fields on a grid of 3.5-degree steps around a centre, each
observed in pairs about half an hour apart (a revisit, as transient searches
need), cycling through g, r and i; seeing is drawn per visit from a
log-normal around 0.8" (sigma 0.2 in ln); rotation varies with the visit.

Output layout (``out`` directory)::

    raw/<day_obs>/<seq>/<instrument>_<day_obs>_<seq>_<det>.fits   one file per detector
    truth.parquet      injected transients on each (visit, detector): position, flux, time, expected S/N
    next_visit.jsonl   one nextVisit payload per visit (fields of schemas/events/nextVisit.v1.avsc)
    night.json         the plan (observations) and the seed
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ._pointing import Observation

__all__ = ["next_visit_payload", "plan_night", "write_night"]

_FILTERS = ("g_6", "r_57", "i_39")
_NAMESPACE = uuid.UUID("3f5e2b8c-52a4-4e0b-9a55-0b8f4c1d2e6a")


def plan_night(n_visits: int, *, instrument: str = "LSSTCam-sim", day_obs: int = 20261206, seed: int = 0,
               ra: float = 150.0, dec: float = 2.0, exposure_time: float = 30.0) -> list[Observation]:
    """``n_visits`` science observations (pairs of revisits of fields around (ra, dec))."""
    if n_visits < 1:
        raise ValueError(f"a night needs at least one visit, not {n_visits}")
    rng = np.random.default_rng([seed, day_obs])
    start = 3600.0 * 2  # 02:00 TAI on the following calendar day (night of day_obs)
    y, m, d = day_obs // 10000, day_obs // 100 % 100, day_obs % 100
    from astropy.time import Time, TimeDelta

    t0 = Time(f"{y:04d}-{m:02d}-{d:02d}T12:00:00", scale="tai") + TimeDelta(12 * 3600 + start, format="sec")
    obs = []
    n_fields = max(1, math.ceil(n_visits / 2))
    side = math.ceil(math.sqrt(n_fields))
    for i in range(n_visits):
        field, revisit = (i // 2) % n_fields, i % 2
        block = i // 2
        fx, fy = field % side - (side - 1) / 2, field // side - (side - 1) / 2
        fdec = dec + 3.5 * fy
        fra = (ra + 3.5 * fx / max(math.cos(math.radians(fdec)), 0.1)) % 360.0
        when = t0 + TimeDelta(block * 2 * 40.0 + revisit * 1800.0 + (block // 8) * 1800.0, format="sec")
        obs.append(Observation(
            instrument=instrument, day_obs=day_obs, seq_num=i + 1, begin=when.isot, observation_type="science",
            physical_filter=_FILTERS[block % len(_FILTERS)], ra=fra, dec=fdec,
            sky_angle=float((37.0 * i) % 360.0), exposure_time=exposure_time,
            seeing=float(np.clip(rng.lognormal(math.log(0.8), 0.2), 0.45, 2.0)),
            airmass=float(rng.uniform(1.0, 1.5)), target=f"field{field:03d}",
        ))
    return obs


def next_visit_payload(obs: Observation, detectors: Sequence[int], seed: int = 0) -> dict[str, Any]:
    """The ``nextVisit`` event an observatory would send ~20 s before the exposure starts."""
    import datetime

    # TAI - UTC has been 37 s since 2017 (no astropy UTC conversion: it may look for a newer leap-second table)
    begin_utc = datetime.datetime.fromisoformat(obs.begin).replace(tzinfo=datetime.UTC)
    issued = begin_utc.timestamp() - 37.0 - 20.0
    return {
        "event_id": str(uuid.uuid5(_NAMESPACE, f"{seed}/{obs.instrument}/{obs.exposure_id}")),
        "instrument": obs.instrument, "group_id": obs.obs_id, "visit": obs.exposure_id, "day_obs": obs.day_obs,
        "survey": "nightshift-sim", "ra_deg": obs.ra, "dec_deg": obs.dec, "rotation_deg": obs.sky_angle,
        "physical_filter": obs.physical_filter, "exposure_time_s": obs.exposure_time, "n_snaps": 1,
        "detectors": list(detectors), "issued_at": int(round(issued * 1_000_000)),
    }


def _render_one(args: tuple[Observation, int, int, str, int]) -> tuple[str, list[dict[str, Any]]]:
    from .._instruments import get_instrument
    from ._raw_io import write_raw
    from ._render import render_detector

    obs, detector, seed, out, size = args
    camera = get_instrument(obs.instrument, detector_size=size).camera
    rendered = render_detector(obs, camera, detector, seed=seed)
    path = write_raw(Path(out) / "raw" / str(obs.day_obs) / f"{obs.seq_num:06d}", obs, camera, detector,
                     rendered.adu, extra={"NSSEED": seed, "NSSAT": rendered.satellite, "NSNCR": rendered.cosmic_rays})
    return str(path), rendered.truth


def write_night(out: str | os.PathLike[str], observations: Sequence[Observation], detectors: Sequence[int], *,
                seed: int = 0, detector_size: int = 4096, processes: int = 1,
                tick: Callable[[], None] | None = None) -> dict[str, Any]:
    """Render and write the raws of ``observations`` for ``detectors``, the truth table and nextVisit payloads.

    Returns
    -------
    dict
        ``{"raws": [...paths], "truth": path, "next_visit": path, "transients": n}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(o, d, seed, str(root), detector_size) for o in observations for d in detectors]
    paths, truth = [], []
    if processes > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            for path, rows in pool.map(_render_one, jobs):
                paths.append(path)
                truth.extend(rows)
                if tick:
                    tick()
    else:
        for job in jobs:
            path, rows = _render_one(job)
            paths.append(path)
            truth.extend(rows)
            if tick:
                tick()
    columns = ["id", "kind", "ra", "dec", "x", "y", "mjd", "band", "flux_e", "mag", "snr_diff", "exposure",
               "detector"]
    pq.write_table(pa.Table.from_pylist(truth, schema=None) if truth else
                   pa.table({c: pa.array([], pa.float64()) for c in columns}), root / "truth.parquet")
    with open(root / "next_visit.jsonl", "w") as f:
        for o in observations:
            f.write(json.dumps(next_visit_payload(o, detectors, seed)) + "\n")
    (root / "night.json").write_text(json.dumps({"seed": seed, "detector_size": detector_size,
                                                 "detectors": list(detectors),
                                                 "observations": [asdict(o) for o in observations]}, indent=1))
    return {"raws": paths, "truth": str(root / "truth.parquet"), "next_visit": str(root / "next_visit.jsonl"),
            "transients": len(truth)}
