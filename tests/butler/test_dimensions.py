"""The dimension universe: shipped config, relationships, data-ID validation, public surface."""

from __future__ import annotations

import pytest
import yaml

from nightshift.butler.dimensions import DimensionUniverse
from nightshift.butler.registry import DataIdError, DimensionNameError


def test_default_universe_is_versioned_and_complete() -> None:
    u = DimensionUniverse.default()
    assert u.namespace == "nightshift" and u.version >= 1
    for name in ("instrument", "detector", "physical_filter", "band", "day_obs", "exposure", "visit", "group",
                 "skymap", "tract", "patch"):
        assert name in u
    assert u["detector"].requires == ("instrument",)
    assert u["patch"].requires == ("skymap", "tract")
    assert u["tract"].requires == ("skymap",)
    assert set(u["visit"].implies) >= {"physical_filter", "day_obs"}
    assert u["physical_filter"].implies == ("band",)
    assert u["visit"].has_region and u["tract"].has_region and u["patch"].has_region
    assert {"seeing", "airmass", "exposure_time", "boresight_ra", "boresight_dec"} <= set(u["visit"].fields)
    assert u.joins["visit_definition"].dimensions == ("instrument", "exposure", "visit")


def test_order_puts_dependencies_first() -> None:
    u = DimensionUniverse.default()
    order = u.names
    for name in order:
        for other in (*u[name].requires, *u[name].implies):
            assert order.index(other) < order.index(name)


def test_closures() -> None:
    u = DimensionUniverse.default()
    assert u.required_closure(["patch"]) == ("skymap", "tract", "patch")
    assert set(u.full_closure(["visit"])) == {"instrument", "visit", "physical_filter", "band", "day_obs"}


def test_config_round_trips(tmp_path) -> None:
    u = DimensionUniverse.default()
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump(u.to_config()))
    again = DimensionUniverse.from_yaml(path)
    assert again.to_config() == u.to_config()
    assert again.names == u.names


def test_config_errors_are_specific() -> None:
    with pytest.raises(DimensionNameError, match="undefined dimension 'nope'"):
        DimensionUniverse({"namespace": "x", "version": 1, "elements": {"a": {"requires": ["nope"]}}})
    with pytest.raises(DimensionNameError, match="cycle"):
        DimensionUniverse({"namespace": "x", "version": 1,
                           "elements": {"a": {"requires": ["b"]}, "b": {"requires": ["a"]}}})
    with pytest.raises(DimensionNameError, match="field 'f' has type 'complex'"):
        DimensionUniverse({"namespace": "x", "version": 1, "elements": {"a": {"fields": {"f": "complex"}}}})


def test_unknown_dimension_is_a_lookup_error() -> None:
    u = DimensionUniverse.default()
    with pytest.raises(DimensionNameError, match="unknown dimension 'vist'") as info:
        u["vist"]
    assert isinstance(info.value, LookupError)


def test_normalize_data_id() -> None:
    u = DimensionUniverse.default()
    dims = ("instrument", "visit", "detector")
    out = u.normalize_data_id(dims, {"instrument": "Cam", "visit": 3, "detector": 1, "band": "r"})
    assert out == {"instrument": "Cam", "detector": 1, "visit": 3}
    with pytest.raises(DataIdError, match=r"lacks required key\(s\) \['detector'\]"):
        u.normalize_data_id(dims, {"instrument": "Cam", "visit": 3})
    with pytest.raises(DataIdError, match="'visit' must be an int"):
        u.normalize_data_id(dims, {"instrument": "Cam", "visit": "3", "detector": 1})
    with pytest.raises(DataIdError, match="'instrument' must be a str"):
        u.normalize_data_id(dims, {"instrument": 1, "visit": 3, "detector": 1})
    with pytest.raises(DimensionNameError, match="unknown key 'vist'"):
        u.normalize_data_id(dims, {"instrument": "Cam", "vist": 3, "detector": 1})
