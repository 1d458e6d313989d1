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


def test_day_obs_exposure_ids_are_packed_and_unpacked_exactly() -> None:
    """Visits ``day_obs * 100000 + seq`` (41 bits) fit the 32 visit bits and come back unchanged."""
    visits = [2026120600005, 2026120600005, 2026120700001, 2058101699999, 2000010100000]
    ids = make_source_ids(visits, [94, 95, 94, 0, 1], [3, 3, 0, 1_048_575, 7])
    assert np.all(ids > 0) and len(set(ids.tolist())) == 5
    v, d, n = split_source_ids(ids)
    assert v.tolist() == visits and d.tolist() == [94, 95, 94, 0, 1] and n.tolist() == [3, 3, 0, 1_048_575, 7]
    small = make_source_ids(123456789, 3, 1)  # below 2**31: the visit bits are the visit, as before
    assert int(small) >> 31 == 123456789
    for bad in (2026133100001, 2058101800000, 1999123100001, 2**31 + 5):
        with pytest.raises(ValueError, match="day_obs"):
            make_source_ids(bad, 1, 0)
