"""Read hooks: plug-ins serve some ``Butler.get`` calls; the core does not know them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from registry_support import populate

from nightshift.butler import Butler, DatasetRef, DatasetType, ReadHooks, read_hooks
from nightshift.butler._storage_class import StorageClassError

METRIC = DatasetType("metric", ["instrument", "visit"], "StructuredDataDict")


@pytest.fixture
def butler(tmp_path: Path) -> Iterator[Butler]:
    Butler.create(tmp_path / "repo").close()
    with Butler(tmp_path / "repo", run="r") as b:
        populate(b.registry)
        b.register_dataset_type(METRIC)
        b.put({"v": 1}, "metric", instrument="Cam", visit=1)
        yield b


def test_a_registered_parameter_hook_serves_get(butler: Butler) -> None:
    seen: list[Any] = []

    def doubled(b: Butler, ref: DatasetRef, parameters: Mapping[str, Any] | None, sc: str | None) -> Any:
        seen.append((ref.dataset_type.name, dict(parameters or {}), sc))
        return {k: 2 * v for k, v in b.get(ref).items()}

    read_hooks.register(doubled, parameter="doubled")
    try:
        assert butler.get("metric", instrument="Cam", visit=1, parameters={"doubled": True}) == {"v": 2}
        assert butler.get("metric", instrument="Cam", visit=1) == {"v": 1}  # no hook without the parameter
    finally:
        read_hooks.unregister(parameter="doubled")
    assert seen == [("metric", {"doubled": True}, None)]


def test_storage_class_hooks_serve_whole_datasets_not_components() -> None:
    hooks = ReadHooks()
    hook = object()
    hooks.register(hook, storage_class="StructuredDataDict")  # type: ignore[arg-type]  # identity only
    ref = DatasetRef(METRIC, {"instrument": "Cam", "visit": 1}, "r")
    assert hooks.find(ref, None) is hook
    assert hooks.find(ref.make_component_ref("v"), None) is None


def test_plugins_load_on_first_lookup_and_register_once() -> None:
    hooks = ReadHooks(plugins=["nightshift.butler.external._hooks"])
    ref = DatasetRef(METRIC, {"instrument": "Cam", "visit": 1}, "r")
    assert hooks.find(ref, {"selection": "x"}) is None  # already imported: registered into read_hooks, not here
    assert read_hooks.find(ref, {"selection": "x"}) is not None
    with pytest.raises(StorageClassError, match="registered already"):
        read_hooks.register(lambda *a: None, parameter="selection")
    with pytest.raises(StorageClassError, match="exactly one"):
        hooks.register(lambda *a: None)
