"""The worked example pipeline (``docs/pipeline-example.md``) and the benchmark's no-op tasks."""

from pathlib import Path

from ._tasks import (
    AssociateConfig,
    AssociateTask,
    CalibrateConfig,
    CalibrateTask,
    MeasureConfig,
    MeasureTask,
    NoopDetectorTask,
    NoopGlobalTask,
    NoopVisitTask,
    PreloadConfig,
    PreloadTask,
    SurveySummaryTask,
    VisitSummaryConfig,
    VisitSummaryTask,
)

#: The example pipeline's YAML file.
EXAMPLE_PIPELINE = Path(__file__).with_name("example_pipeline.yaml")
#: The benchmark's three-step no-op pipeline.
NOOP_PIPELINE = Path(__file__).with_name("noop_pipeline.yaml")

__all__ = [
    "EXAMPLE_PIPELINE",
    "NOOP_PIPELINE",
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
