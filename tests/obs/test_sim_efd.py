"""A simulated night, ingested, drives the EFD stream simulator: its seeing streams match what was rendered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nightshift.butler import Butler
from nightshift.efd import Efd, EfdSettings, simulate_efd
from nightshift.obs import ingest_raws
from nightshift.obs.sim import plan_night, write_night


def test_efd_seeing_over_each_visit_is_the_seeing_the_simulator_rendered(tmp_path: Path, pg_dsn: str,
                                                                        unique_name: str) -> None:
    # A night inside astropy's bundled IERS table (the EFD simulator's alt/az needs UT1 for its dates);
    # one visit per field, so visit ids and times increase together (the EFD simulator interpolates
    # seeing between visits in visit-id order).
    plan = plan_night(6, instrument="TestCam", seed=9, day_obs=20240610)[0::2]
    write_night(tmp_path / "night", plan, [0], seed=9, detector_size=32)
    with Butler.create(tmp_path / "repo") as butler, \
            Efd(EfdSettings(dsn=pg_dsn, schema_name=f"efd_{unique_name}")) as efd:
        try:
            assert ingest_raws(butler, [tmp_path / "night" / "raw"], processes=1).ok
            simulate_efd(efd, butler.registry, instrument="TestCam", seed=9, margin_s=60.0)
            base = efd.reader("base")
            for obs in plan:
                dimm = base.query_visit(butler.registry, "dimm_seeing", instrument="TestCam", visit=obs.exposure_id)
                dome = base.query_visit(butler.registry, "dome_seeing", instrument="TestCam", visit=obs.exposure_id)
                total = float(np.hypot(dimm.mean("fwhm"), dome.mean("fwhm")))
                assert total == pytest.approx(obs.seeing, rel=0.05)
        finally:
            efd.drop()
