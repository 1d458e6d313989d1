"""The ledger of published (visit, detector)s that the alert publisher deduplicates with."""

from __future__ import annotations

import pytest

from nightshift.alerts import AlertError, PublishedLedger, PublishedRecord, Verdict, dia_sources_digest, published_key


def test_verdicts_by_visit_detector_and_ids() -> None:
    ledger = PublishedLedger(window_s=100.0)
    key = published_key("LSSTCam", 7, 3)
    assert key == "LSSTCam/7/3"
    digest = dia_sources_digest([30, 10, 20])
    assert digest == dia_sources_digest([10, 20, 30, 20])  # a set: order and repeats do not matter
    assert ledger.verdict(key, digest) is Verdict.NEW
    ledger.add(key, PublishedRecord("e1", digest, 3), timestamp_s=1000.0)
    assert ledger.verdict(key, digest) is Verdict.DUPLICATE  # any event id: the key decides
    assert ledger.verdict(key, dia_sources_digest([10, 20])) is Verdict.CONFLICT
    assert ledger.verdict(published_key("LSSTCam", 7, 4), digest) is Verdict.NEW


def test_records_round_trip_and_old_ones_are_forgotten() -> None:
    ledger = PublishedLedger(window_s=100.0)
    record = PublishedRecord("e1", dia_sources_digest([1]), 1)
    assert PublishedRecord.decode(record.encode()) == record
    ledger.add("a", record, timestamp_s=1000.0)
    ledger.add("b", record, timestamp_s=1050.0)
    assert ledger.prune(now_s=1099.0) == 0 and len(ledger) == 2
    assert ledger.prune(now_s=1120.0) == 1
    assert "a" not in ledger and "b" in ledger
    with pytest.raises(AlertError, match="NIGHTSHIFT_PUBLISHED_TOPIC"):
        PublishedRecord.decode(b"{}")
    with pytest.raises(AlertError, match="positive"):
        PublishedLedger(window_s=0)
