"""Example tasks of the worked pipeline in ``docs/pipeline-example.md``.

Three steps with different data groupings (REQ-0006/0007):

* ``CalibrateTask`` — 1:1 per (instrument, visit, detector): subtracts the
  ``bias`` prerequisite from the ``raw`` image and measures it with a
  sub-task (``MeasureTask``, nested config).
* ``VisitSummaryTask`` — N:1 per (instrument, visit): combines the
  detectors' statistics; reads only the detectors it is configured to use,
  so its *actual* inputs are a subset of the predicted ones.
* ``SurveySummaryTask`` — N:1 over the whole instrument.

The ``Noop*`` tasks have the same shape and do nothing: the benchmark uses
them to measure the framework's own overhead.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._config import PipelineTaskConfig, TaskConfig
from .._connections import Input, Output, PipelineTaskConnections, PrerequisiteInput
from .._context import QuantumContext
from .._task import PipelineTask, Struct, Task

__all__ = [
    "AssociateConfig",
    "AssociateTask",
    "CalibrateConfig",
    "CalibrateTask",
    "MeasureConfig",
    "MeasureTask",
    "NoopDetectorTask",
    "NoopGlobalTask",
    "NoopVisitTask",
    "PreloadConfig",
    "PreloadTask",
    "SurveySummaryTask",
    "VisitSummaryConfig",
    "VisitSummaryTask",
]


class MeasureConfig(TaskConfig):
    """Config of the measurement sub-task."""

    threshold: float = 5.0
    statistic: str = "mean"


class MeasureTask(Task):
    """Counts pixels above ``threshold`` sigma and reports a statistic of the image."""

    ConfigClass = MeasureConfig
    config: MeasureConfig

    def run(self, image: np.ndarray) -> Struct:
        sigma = float(image.std()) or 1.0
        level = float(getattr(np, self.config.statistic)(image))
        n = int((image - level > self.config.threshold * sigma).sum())
        return Struct(level=level, sigma=sigma, n_detections=n)


class CalibrateConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    raw = Input("raw", "NumpyArray", ("instrument", "visit", "detector"), doc="Raw image")
    bias = PrerequisiteInput("bias", "NumpyArray", ("instrument", "detector"), doc="Bias frame")
    calexp = Output("calexp", "NumpyArray", ("instrument", "visit", "detector"), doc="Calibrated image")
    stats = Output("calexp_stats", "StructuredDataDict", ("instrument", "visit", "detector"),
                   doc="Measurements of the calibrated image")


class CalibrateConfig(PipelineTaskConfig):
    """Config of :class:`CalibrateTask` (``measure`` is the nested sub-task config)."""

    measure: MeasureConfig = MeasureConfig()
    gain: float = 1.0
    fail_detectors: list[int] = []
    fail_marker: str | None = None  # fail (for fail_detectors) only while this file exists: demonstrates resume
    crash_detectors: list[int] = []  # the worker process dies (os._exit): demonstrates crash handling
    # crash only while this file exists, deleting it first: one crash, then a retry
    crash_once_marker: str | None = None


class CalibrateTask(PipelineTask):
    """Bias-subtract and scale a raw image, then measure it."""

    ConfigClass = CalibrateConfig
    ConnectionsClass = CalibrateConnections
    config: CalibrateConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.measure = self.make_subtask("measure", MeasureTask)

    def run_quantum(self, context: QuantumContext) -> None:
        if context.data_id.get("detector") in self.config.crash_detectors:
            once = self.config.crash_once_marker
            if once is None:
                os._exit(3)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(once)
                os._exit(3)
        marker = self.config.fail_marker
        if context.data_id.get("detector") in self.config.fail_detectors and (marker is None or Path(marker).exists()):
            raise RuntimeError(f"detector {context.data_id['detector']} is configured to fail")
        super().run_quantum(context)

    def run(self, raw: np.ndarray, bias: np.ndarray) -> Struct:
        calexp = (raw - bias) * self.config.gain
        m = self.measure.run(calexp)
        self.log.debug("measured %d detections", m.n_detections)
        return Struct(calexp=calexp, stats={"level": m.level, "sigma": m.sigma, "n_detections": m.n_detections})


class VisitSummaryConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    stats = Input("calexp_stats", "StructuredDataDict", ("instrument", "visit", "detector"), multiple=True)
    summary = Output("visit_summary", "StructuredDataDict", ("instrument", "visit"))


class VisitSummaryConfig(PipelineTaskConfig):
    """Config of :class:`VisitSummaryTask`."""

    skip_detectors: list[int] = []


class VisitSummaryTask(PipelineTask):
    """Sums the detections of a visit's detectors (reads only the detectors not skipped)."""

    ConfigClass = VisitSummaryConfig
    ConnectionsClass = VisitSummaryConnections
    config: VisitSummaryConfig

    def run_quantum(self, context: QuantumContext) -> None:
        refs = [r for r in context.input_refs("stats") if r.data_id["detector"] not in self.config.skip_detectors]
        context.put_all(self.run([context.get_ref(r) for r in refs]))

    def run(self, stats: list[dict[str, Any]]) -> Struct:
        return Struct(summary={"n_detectors": len(stats),
                               "n_detections": int(sum(s["n_detections"] for s in stats if s))})


class SurveySummaryConnections(PipelineTaskConnections, dimensions=("instrument",)):
    visits = Input("visit_summary", "StructuredDataDict", ("instrument", "visit"), multiple=True)
    summary = Output("survey_summary", "StructuredDataDict", ("instrument",))


class SurveySummaryTask(PipelineTask):
    """Totals over every visit."""

    ConnectionsClass = SurveySummaryConnections

    def run(self, visits: list[dict[str, Any]]) -> Struct:
        return Struct(summary={"n_visits": len(visits), "n_detections": sum(v["n_detections"] for v in visits)})


# ---------------------------------------------------------------------- no-op tasks (benchmark)
class NoopDetectorConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    raw = Input("raw", "NumpyArray", ("instrument", "visit", "detector"))
    out = Output("noop_detector", "StructuredDataDict", ("instrument", "visit", "detector"))


class NoopDetectorTask(PipelineTask):
    """Does nothing per (visit, detector)."""

    ConnectionsClass = NoopDetectorConnections

    def run(self, raw: Any) -> Struct:
        return Struct(out={})


class NoopVisitConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    inputs = Input("noop_detector", "StructuredDataDict", ("instrument", "visit", "detector"), multiple=True)
    out = Output("noop_visit", "StructuredDataDict", ("instrument", "visit"))


class NoopVisitTask(PipelineTask):
    """Does nothing per visit."""

    ConnectionsClass = NoopVisitConnections

    def run(self, inputs: list[Any]) -> Struct:
        return Struct(out={})


class NoopGlobalConnections(PipelineTaskConnections, dimensions=("instrument",)):
    inputs = Input("noop_visit", "StructuredDataDict", ("instrument", "visit"), multiple=True)
    out = Output("noop_global", "StructuredDataDict", ("instrument",))


class NoopGlobalTask(PipelineTask):
    """Does nothing once per instrument."""

    ConnectionsClass = NoopGlobalConnections

    def run(self, inputs: list[Any]) -> Struct:
        return Struct(out={})


# ---------------------------------------------------------------------- cooperating tasks (REQ-0030)
class PreloadConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    objects = Output("preloaded_objects", "StructuredDataDict", ("instrument", "visit"))


class PreloadConfig(PipelineTaskConfig):
    """Config of :class:`PreloadTask`."""

    seconds: float = 1.0
    # instead of ``seconds``: last until this file exists (a consumer announced it is waiting; at most
    # ``seconds``, then the preload fails) — lets a test order the two quanta without racing the clock
    until_file: str | None = None


class PreloadTask(PipelineTask):
    """Fetches the known objects of a visit's field (stands in for an APDB query that takes ``seconds``)."""

    ConfigClass = PreloadConfig
    ConnectionsClass = PreloadConnections
    config: PreloadConfig

    def run_quantum(self, context: QuantumContext) -> None:
        if self.config.until_file is None:
            time.sleep(self.config.seconds)
        else:
            until, deadline = Path(self.config.until_file), time.monotonic() + self.config.seconds
            while not until.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{until} did not appear within {self.config.seconds} s")
                time.sleep(0.01)
        context.put("objects", {"visit": context.data_id["visit"], "objects": list(range(5))})


class AssociateConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    raw = Input("raw", "NumpyArray", ("instrument", "visit", "detector"))
    objects = Input("preloaded_objects", "StructuredDataDict", ("instrument", "visit"), deferred=True)
    associations = Output("associations", "StructuredDataDict", ("instrument", "visit", "detector"))


class AssociateConfig(PipelineTaskConfig):
    """Config of :class:`AssociateTask`."""

    work_seconds: float = 1.0
    announce_file: str | None = None  # created just before waiting for the objects (see PreloadConfig)


class AssociateTask(PipelineTask):
    """Processes its image while :class:`PreloadTask` fetches objects, then waits for and uses them."""

    ConfigClass = AssociateConfig
    ConnectionsClass = AssociateConnections
    config: AssociateConfig

    def run_quantum(self, context: QuantumContext) -> None:
        image = context.get("raw")
        time.sleep(self.config.work_seconds)  # image processing, overlapping the preload
        if self.config.announce_file is not None:
            Path(self.config.announce_file).touch()
        t = time.time()
        objects = context.get("objects")      # blocks until the preload quantum has written them
        context.put("associations", {"n_objects": len(objects["objects"]), "waited_s": time.time() - t,
                                     "pixels": int(image.size) if image is not None else 0})
