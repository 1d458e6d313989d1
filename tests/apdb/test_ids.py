"""DIA source ids (pure computation)."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.apdb import make_source_ids, split_source_ids


def test_source_ids_are_deterministic_and_reversible() -> None:
    ids = make_source_ids([123456789, 123456789], [188, 3], [0, 1_000_000])
    assert ids[0] != ids[1] and np.all(ids > 0)
    np.testing.assert_array_equal(make_source_ids(123456789, 188, 0), ids[0])
    v, d, n = split_source_ids(ids)
    assert v.tolist() == [123456789, 123456789] and d.tolist() == [188, 3] and n.tolist() == [0, 1_000_000]
    with pytest.raises(ValueError):
        make_source_ids(1, 4096, 0)
