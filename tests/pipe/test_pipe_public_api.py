"""The pipeline packages' public surface is exactly their curated ``__all__``; error codes are unique."""

from __future__ import annotations

import importlib
import inspect

import pytest

import nightshift.pipe as pipe

PACKAGES = ["nightshift.pipe", "nightshift.pipe.executors", "nightshift.pipe.examples"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = {n for n in module.__all__ if not n.startswith("__")}
    # dir(): names exported lazily (the Kafka executor) count too
    public = {n for n in dir(module) if not n.startswith("_") and not inspect.ismodule(getattr(module, n))}
    public.discard("annotations")
    public.discard("Path")  # examples: used for the YAML file constants
    assert exported - public == set(), f"{name}.__all__ names missing attributes"
    assert public - exported == set(), f"{name} exposes names not in __all__"


def test_exception_tree() -> None:
    from nightshift import NightshiftError

    errors = [getattr(pipe, n) for n in pipe.__all__ if n.endswith("Error")]
    assert all(issubclass(e, pipe.PipelineError) and issubclass(e, NightshiftError) for e in errors)
    assert len({e.error_type for e in errors}) == len(errors)
    assert issubclass(pipe.PipelineDefinitionError, ValueError)
    assert issubclass(pipe.UnknownDatasetTypeError, LookupError)
    err = pipe.QuantumExecutionError("boom", task_label="calibrate", data_id={"visit": 1})
    assert str(err) == "calibrate {'visit': 1}: boom" and err.task_label == "calibrate"
