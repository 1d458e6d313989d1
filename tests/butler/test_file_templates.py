"""File templates: predictable (REQ-0066), unique (REQ-0078), and unable to escape the root."""

from __future__ import annotations

import pytest

from nightshift.butler import DatasetRef, DatasetType
from nightshift.butler._file_templates import FileTemplate, FileTemplateError, FileTemplates

CALEXP = DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure")


def ref(**data_id: int | str) -> DatasetRef:
    base: dict[str, int | str] = {"instrument": "HSC", "visit": 903334, "detector": 16}
    base.update(data_id)
    return DatasetRef(CALEXP, base, run="HSC/runs/RC2")


def test_configured_template_gives_predictable_path() -> None:
    t = FileTemplates(
        {"calexp": "{run}/calexp/{instrument}/{visit:08d}/calexp_{instrument}_{visit:08d}_{detector:03d}"}
    )
    assert t.path(ref()) == "HSC/runs/RC2/calexp/HSC/00903334/calexp_HSC_00903334_016"
    # Same inputs, same path, every time (independent of how the data is accessed).
    assert t.path(ref()) == t.path(ref())


def test_default_template_is_unique_per_data_id_and_run() -> None:
    t = FileTemplates()
    paths = {t.path(ref(detector=d)) for d in range(5)}
    assert len(paths) == 5
    other_run = DatasetRef(CALEXP, {"instrument": "HSC", "visit": 903334, "detector": 16}, run="other")
    assert t.path(other_run) != t.path(ref())
    assert t.path(ref()).rsplit("/", 1)[-1] == "calexp_detector=16_instrument=HSC_visit=903334_HSC_runs_RC2"


def test_template_missing_a_dimension_is_rejected() -> None:
    t = FileTemplates({"calexp": "{run}/calexp/{visit}"})
    with pytest.raises(FileTemplateError, match="not be unique"):
        t.path(ref())
    assert FileTemplates({"calexp": "{run}/{id}"}).path(ref()).endswith(str(ref().id))


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/passwd", "..", ".", ".hidden", "a/b", "a\\b", ""])
def test_data_id_values_cannot_escape_the_root(value: str) -> None:
    t = FileTemplates({"calexp": "{run}/{instrument}/{visit}/{detector}"})
    path = t.path(ref(instrument=value))
    parts = path.split("/")
    assert not path.startswith("/")
    assert ".." not in parts and "." not in parts
    assert all(p and not p.startswith(".") for p in parts)
    assert len(parts) == 6  # run has 3 segments; the value is exactly one segment


@pytest.mark.parametrize("run", ["../up", "/abs/run", "a/../../b"])
def test_run_names_cannot_escape_the_root(run: str) -> None:
    r = DatasetRef(CALEXP, {"instrument": "HSC", "visit": 1, "detector": 2}, run=run)
    path = FileTemplates().path(r)
    assert not path.startswith("/") and ".." not in path.split("/")


@pytest.mark.parametrize("template", ["/abs/{run}", "../{run}/{id}", "{run}/../{id}", "{run}/{a.b}", "{run}/{", ""])
def test_unsafe_or_invalid_templates_are_rejected(template: str) -> None:
    with pytest.raises(FileTemplateError):
        FileTemplate(template)


def test_lookup_order_dataset_type_then_storage_class_then_default() -> None:
    t = FileTemplates({"Exposure": "sc/{run}/{id}", "calexp": "dt/{run}/{id}"})
    assert t.path(ref()).startswith("dt/")
    raw = DatasetType("raw", ["instrument"], "Exposure")
    assert t.path(DatasetRef(raw, {"instrument": "HSC"}, "r")).startswith("sc/")
    src = DatasetType("src", ["instrument"], "AstropyTable")
    assert t.path(DatasetRef(src, {"instrument": "HSC"}, "r")).startswith("r/src/")
