"""The record of published (visit, detector)s: what makes the alert publisher drop repeated ``dia.results``.

A (visit, detector) is published once. The alert publisher writes one record per
published (visit, detector) to a compacted Kafka topic *inside* the transaction that
publishes its alerts and commits its input offsets (the pattern of a Kafka Streams
deduplication state store and its changelog topic), and keeps the records of the
last ``window_s`` seconds in a :class:`PublishedLedger`. This module holds the
ledger and the record format; the Kafka reading and writing is in the service.

Key ``"{instrument}/{visit}/{detector}"``; value JSON
``{"event_id", "ids_sha256", "n_dia_sources"}``. An event whose key is in the ledger with
the same DiaSource ids (:func:`dia_sources_digest`) is a duplicate (a runner's replay:
the same event id, or a new one for the same quantum); with other ids it is a conflict
(the quantum was recomputed differently), which the publisher dead-letters rather than
publish a second, different set of alerts for one (visit, detector).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ._errors import AlertError

__all__ = ["PublishedLedger", "PublishedRecord", "Verdict", "dia_sources_digest", "published_key"]


def published_key(instrument: str, visit: int, detector: int) -> str:
    """The ledger (and compacted topic) key of one (visit, detector): ``"{instrument}/{visit}/{detector}"``."""
    return f"{instrument}/{visit}/{detector}"


def dia_sources_digest(dia_source_ids: Iterable[int]) -> str:
    """SHA-256 (hex) of the sorted DiaSource ids as big-endian int64: equal for equal sets, in any order."""
    ids = np.unique(np.fromiter((int(i) for i in dia_source_ids), dtype=np.int64))
    return hashlib.sha256(ids.astype(">i8").tobytes()).hexdigest()


class Verdict(Enum):
    """What to do with a ``dia.results`` event, given the ledger."""

    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class PublishedRecord:
    """One published (visit, detector): the value of its compacted-topic record."""

    event_id: str
    ids_sha256: str
    n_dia_sources: int

    def encode(self) -> bytes:
        """The record's value bytes (JSON)."""
        return json.dumps({"event_id": self.event_id, "ids_sha256": self.ids_sha256,
                           "n_dia_sources": self.n_dia_sources}, sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> PublishedRecord:
        """Parse a record value written by :meth:`encode`.

        Raises
        ------
        AlertError
            The bytes are not such a record (the topic is shared with something else).
        """
        try:
            doc = json.loads(value)
            return cls(str(doc["event_id"]), str(doc["ids_sha256"]), int(doc["n_dia_sources"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AlertError(f"not a published-(visit, detector) record: {value[:80]!r} ({exc}); "
                             "give the publisher a topic of its own (NIGHTSHIFT_PUBLISHED_TOPIC)") from exc


class PublishedLedger:
    """The (visit, detector)s published in the last ``window_s`` seconds, in memory.

    Parameters
    ----------
    window_s
        How long a record is kept (and how far back the compacted topic's ``retention.ms``
        reaches). A repeated event that comes later than this is published again.

    Notes
    -----
    About 215 bytes per (visit, detector) (tracemalloc: 151 200 = 800 visits x 189
    detectors take 32 MB).
    """

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise AlertError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        # key -> (ids_sha256, timestamp s), in the order added: records come in time order (the topic's
        # order, then commits), so the oldest are at the front and pruning stops at the first kept one.
        # The digest is kept as its first 64 bits (an int is smaller than the hex text).
        self._records: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def verdict(self, key: str, ids_sha256: str) -> Verdict:
        """NEW if ``key`` is not recorded, DUPLICATE if it is with the same ids, CONFLICT with other ids."""
        got = self._records.get(key)
        if got is None:
            return Verdict.NEW
        return Verdict.DUPLICATE if got[0] == _short(ids_sha256) else Verdict.CONFLICT

    def add(self, key: str, record: PublishedRecord, timestamp_s: float) -> None:
        """Record ``key`` as published at ``timestamp_s`` (Unix seconds); a later record of a key replaces it."""
        self._records.pop(key, None)  # a newer record of a key moves to the back
        self._records[key] = (_short(record.ids_sha256), timestamp_s)

    def prune(self, now_s: float) -> int:
        """Forget the records older than the window; return how many were dropped.

        Stops at the first record (in the order added) within the window, so a call costs only
        what it drops; a record added out of time order may outlive the window by that much.
        """
        cutoff = now_s - self.window_s
        old = []
        for k, (_, t) in self._records.items():
            if t >= cutoff:
                break
            old.append(k)
        for k in old:
            del self._records[k]
        return len(old)


def _short(ids_sha256: str) -> int:
    return int(ids_sha256[:16], 16)
