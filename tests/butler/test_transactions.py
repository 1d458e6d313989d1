"""``removing_on_failure``: the one "write the bytes, remove them if the commit fails" pattern."""

from __future__ import annotations

import pytest

from nightshift.butler import DatasetRef, DatasetType
from nightshift.butler.datastores import InMemoryDatastore, removing_on_failure

METRIC = DatasetType("metric", ["instrument", "visit"], "StructuredDataDict")


def _ref(visit: int) -> DatasetRef:
    return DatasetRef(METRIC, {"instrument": "Cam", "visit": visit}, "run")


class _Recording(InMemoryDatastore):
    def __init__(self, fail_on: set[int]) -> None:
        super().__init__("mem")
        self.removed: list[DatasetRef] = []
        self.fail_on = fail_on

    def remove(self, ref: DatasetRef) -> None:
        if ref.data_id["visit"] in self.fail_on:
            raise OSError(f"cannot remove visit {ref.data_id['visit']} (injected)")
        self.removed.append(ref)


def test_success_removes_nothing() -> None:
    store = _Recording(set())
    with removing_on_failure(store) as written:
        written.append(_ref(1))
    assert store.removed == []


def test_failure_removes_what_was_written_and_reraises_the_original() -> None:
    store = _Recording(set())
    original = RuntimeError("commit failed")
    with pytest.raises(RuntimeError) as info, removing_on_failure(store) as written:
        written.extend([_ref(1), _ref(2)])
        raise original
    assert info.value is original
    assert store.removed == [_ref(1), _ref(2)]
    assert not getattr(original, "__notes__", [])


def test_cleanup_failure_is_noted_on_the_original_and_the_rest_still_removed() -> None:
    store = _Recording({1})
    with pytest.raises(RuntimeError, match="commit failed") as info, removing_on_failure(store) as written:
        written.extend([_ref(1), _ref(2)])
        raise RuntimeError("commit failed")
    assert store.removed == [_ref(2)]
    (note,) = info.value.__notes__
    assert "cannot remove visit 1" in note and "'mem'" in note
