"""Storage classes from YAML configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from nightshift.butler._storage_class import StorageClass, StorageClassError, StorageClassFactory
from nightshift.butler.formatters import Exposure


def test_defaults_define_exposure_components() -> None:
    scf = StorageClassFactory()
    exp = scf.get("Exposure")
    assert exp.is_composite and set(exp.components) == {"image", "mask", "variance", "psf", "wcs", "metadata"}
    assert exp.pytype is Exposure
    assert scf.component_class("Exposure", "wcs").name == "Wcs"
    with pytest.raises(StorageClassError):
        scf.component_class("Exposure", "nope")
    with pytest.raises(StorageClassError):
        scf.get("Nope")


def test_yaml_file_adds_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump({"storage_classes": {"Counts": {"pytype": "builtins.int"}}}))
    scf = StorageClassFactory.from_yaml(path)
    assert scf.get("Counts").pytype is int
    assert "Exposure" in scf
    scf.get("Counts").validate_instance(3)
    with pytest.raises(StorageClassError, match="does not match"):
        scf.get("Counts").validate_instance("3")
    assert scf.to_dict()["storage_classes"]["Counts"] == {"pytype": "builtins.int"}


def test_bad_definitions_are_clear_errors() -> None:
    with pytest.raises(StorageClassError, match="pytype"):
        StorageClassFactory({"storage_classes": {"X": {"components": {}}}})
    with pytest.raises(StorageClassError, match="unknown key"):
        StorageClassFactory({"storage_classes": {"X": {"pytype": "builtins.int", "colour": 1}}})
    with pytest.raises(StorageClassError, match="cannot import"):
        _ = StorageClass("X", "no_such_module_xyz.Type").pytype


def test_delegate_handles_exposure_parameters() -> None:
    scf = StorageClassFactory()
    exp = Exposure(image=np.arange(100, dtype=np.float32).reshape(10, 10))
    cut = scf.get("Exposure").delegate().handle_parameters(exp, {"bbox": (2, 3, 5, 7)})
    np.testing.assert_array_equal(cut.image, exp.image[3:7, 2:5])
    with pytest.raises(ValueError):
        scf.get("Exposure").delegate().handle_parameters(exp, {"zoom": 2})
