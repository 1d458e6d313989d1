"""A realistic alert stream for broker developers: the APDB sky simulator, visit after visit, to any Kafka.

Each visit of a :class:`~nightshift.apdb.SkyField` detects ``alerts_per_visit``
objects of its field; the stream keeps the field's last 12 months of sources
and forced sources in memory (the preload an AP pipeline would read), so every
alert carries the coherent history of its object. Cutouts are simulated
(noise plus a PSF-shaped source at the centre) with a real local TAN WCS.
The simulated sky's visits are ``cadence`` seconds apart and the first one's
shutter closes now (30 s exposures), so the latency metric and ``nightshift alerts tail``'s age are meaningful.
The stream remembers the last ``max_history_visits`` visits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..apdb import SkyField
from ..events import KafkaSettings
from ._cutouts import CutoutWriter, LocalWcs
from ._packet import AlertBatch, AlertEncoder, Cutouts, EncodedCache
from ._publisher import AlertPublisher, PublishReport

__all__ = ["AlertStream", "simulated_cutouts"]

_MJD_UNIX0 = 40587.0
_TAI_UTC = 37.0


def _now_mjd_tai() -> float:
    return (time.time() + _TAI_UTC) / 86400.0 + _MJD_UNIX0


def simulated_cutouts(sources: pa.Table, rng: np.random.Generator, writer: CutoutWriter | None = None) -> list[Cutouts]:
    """Difference, science and template cutouts of each source (bboxSize pixels, clipped to Rubin's 30..102)."""
    writer = writer or CutoutWriter()
    ra = sources.column("ra").to_numpy()
    dec = sources.column("dec").to_numpy()
    size = np.clip(np.nan_to_num(sources.column("bboxSize").to_numpy(zero_copy_only=False), nan=30.0), 30, 102)
    flux = np.abs(np.nan_to_num(sources.column("psfFlux").to_numpy(zero_copy_only=False), nan=1.0)) * 5000 + 500
    out = []
    yy, xx = np.mgrid[-10:11, -10:11]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 1.7**2)).astype(np.float32)
    psf /= psf.sum()
    for i in range(sources.num_rows):
        n = int(size[i])
        c = (n - 1) / 2
        y, x = np.mgrid[0:n, 0:n]
        star = (flux[i] * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * 1.7**2)) / (2 * np.pi * 1.7**2))
        template = rng.normal(0, 30, (n, n)).astype(np.float32) + 0.3 * star.astype(np.float32)
        science = rng.normal(0, 30, (n, n)).astype(np.float32) + star.astype(np.float32)
        diff = science - template
        var = np.full((n, n), 900.0, np.float32)
        mask = np.zeros((n, n), np.int32)
        rot = float(rng.random() * 360)
        wcs = LocalWcs.around(float(ra[i]), float(dec[i]), n, 0.2, rot)
        out.append(Cutouts(*(writer.write(img, var, mask, psf, wcs, rot) for img in (diff, science, template))))
    return out


@dataclass
class AlertStream:
    """Publishes simulated visits of alerts, with coherent histories, visit after visit.

    Parameters
    ----------
    kafka : KafkaSettings or str
    alerts_per_visit : int
    cadence : float
        Seconds between visits (Rubin: ~35 s).
    topic, registry_url, partitions : optional
        See :class:`AlertPublisher`.
    seed : int
    """

    kafka: KafkaSettings | str
    alerts_per_visit: int = 10_000
    cadence: float = 35.0
    topic: str | None = None
    registry_url: str | None = None
    partitions: int = 45
    seed: int = 2026
    schema: str | None = None
    max_history_visits: int = 60
    sky: SkyField = field(init=False)
    _history: list[Any] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        n = self.alerts_per_visit
        # A field dense enough that each visit detects n objects, and revisits them: 3 centres, daily cadence.
        self.sky = SkyField(centres=3, density=max(4.0 * n / 9.6, 50.0), sources_per_visit=n, forced_per_visit=n,
                            seed=self.seed, mjd0=_now_mjd_tai() - 15.0 / 86400, cadence_days=self.cadence / 86400.0,
                            null_fraction=0.02)
        self.encoder = AlertEncoder(self.schema, cache=EncodedCache())
        self._rng = np.random.default_rng(self.seed)
        self._writer = CutoutWriter()

    def build(self, i: int) -> AlertBatch:
        """Visit ``i``'s alerts."""
        v = self.sky.visit(i)
        sources, forced, objects = v.sources, v.forced_sources, v.objects
        region = self.sky.region(i)
        since = v.mjd - 365.0
        keep = [h for h in self._history if h[2] >= since]
        pre_src = _in(pa.concat_tables([h[0] for h in keep]), region) if keep else None
        pre_forced = _in(pa.concat_tables([h[1] for h in keep]), region) if keep else None
        batch = self.encoder.build(sources, objects, preload=(None, pre_src, pre_forced), forced_sources=forced,
                                   cutouts=simulated_cutouts(sources, self._rng, self._writer))
        self._history = [*keep, (sources, forced, v.mjd)][-self.max_history_visits :]
        return batch

    def run(
        self, visits: int | None = None, on_visit: Callable[[int, PublishReport], None] | None = None
    ) -> list[PublishReport]:
        """Publish ``visits`` visits (forever when ``None``), one every ``cadence`` seconds."""
        reports: list[PublishReport] = []
        with AlertPublisher(self.kafka, topic=self.topic, registry_url=self.registry_url,
                            partitions=self.partitions) as pub:
            i = 0
            while visits is None or i < visits:
                start = time.monotonic()
                report = pub.publish(self.build(i))
                if on_visit is not None:
                    on_visit(i, report)
                if visits is not None:
                    reports.append(report)
                i += 1
                if visits is None or i < visits:
                    time.sleep(max(0.0, self.cadence - (time.monotonic() - start)))
        return reports


def _in(table: pa.Table, region: Any) -> pa.Table:
    mask = region.contains(table.column("ra").to_numpy(), table.column("dec").to_numpy())
    return table.filter(pa.array(mask))
