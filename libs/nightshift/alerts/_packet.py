"""Alert packets assembled from the APDB's tables: one alert per new DiaSource.

Inputs are the tables a detector task holds after association: the new
DiaSources, the new DiaObject versions and (optionally) the new forced
sources of the visit, plus the field's :class:`~nightshift.apdb.Preload`
(DiaObjects, the DiaSource and DiaForcedSource history). Columns map to the
alert schema's fields by name; see ``docs/alerts.md`` for the few mismatches.

Each table row is encoded once (:class:`~nightshift.alerts.RecordEncoder`);
histories are sorted by (diaObjectId, midpointMjdTai), so the history of an
alert is one contiguous slice of the encoded buffer, and an alert is the join
of about fifteen byte slices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ._encoder import EncodedRows, RecordEncoder, RowProblems, as_arrow, encode_long
from ._errors import AlertSchemaError
from ._schema import AlertSchema

__all__ = ["HISTORY_DAYS", "AlertBatch", "AlertEncoder", "BadAlert", "Cutouts", "EncodedCache", "frame", "unframe"]

#: Depth of ``prvDiaSources`` and ``prvDiaForcedSources``: 12 months (days).
HISTORY_DAYS = 365.0
_MAGIC = b"\x00"


def frame(schema_id: int, body: bytes) -> bytes:
    """Confluent wire format: magic byte 0, the 4-byte big-endian schema id, the Avro body."""
    return _MAGIC + schema_id.to_bytes(4, "big") + body


def unframe(message: bytes) -> tuple[int, bytes]:
    """(schema id, Avro body) of a Confluent-framed message.

    Raises
    ------
    ValueError
        The message is shorter than 5 bytes or does not start with the magic byte 0.
    """
    if len(message) < 5 or message[:1] != _MAGIC:
        raise ValueError("not a Confluent-framed message: it must start with byte 0 and a 4-byte schema id")
    return int.from_bytes(message[1:5], "big"), bytes(message[5:])


@dataclass(frozen=True)
class Cutouts:
    """The three FITS cutouts of one alert (bytes, e.g. from :func:`~nightshift.alerts.write_cutout`)."""

    difference: bytes | None = None
    science: bytes | None = None
    template: bytes | None = None


@dataclass(frozen=True)
class BadAlert:
    """A new DiaSource that could not become a valid alert, and why.

    ``field`` names the alert field, e.g. ``diaSource.psfNdata`` or
    ``prvDiaSources[diaSourceId=123].visit``.
    """

    dia_source_id: int
    visit: int | None
    detector: int | None
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "diaSourceId": self.dia_source_id,
            "visit": self.visit,
            "detector": self.detector,
            "field": self.field,
            "reason": self.reason,
        }


@dataclass
class AlertBatch:
    """The alerts of one batch of new DiaSources (usually one detector of one visit).

    Attributes
    ----------
    schema : AlertSchema
        The schema the bodies follow.
    messages : list of bytes
        One per good alert, ready for Kafka: the Confluent framing (byte 0, the
        4-byte schema id) then the Avro body. :attr:`payloads` are the bodies.
    dia_source_ids, visits, detectors : numpy arrays
        Per good alert.
    midpoints : numpy array
        ``diaSource.midpointMjdTai`` per good alert (for the latency metric).
    bad : list of BadAlert
        New DiaSources that did not become alerts.
    """

    schema: AlertSchema
    messages: list[bytes]
    dia_source_ids: NDArray[np.int64]
    visits: NDArray[np.int64]
    detectors: NDArray[np.int64]
    midpoints: NDArray[np.float64]
    bad: list[BadAlert] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def payloads(self) -> list[bytes]:
        """The Avro bodies (copies of :attr:`messages` without their 5-byte framing)."""
        return [m[5:] for m in self.messages]

    def bodies(self) -> list[memoryview]:
        """The Avro bodies as views into :attr:`messages` (no copy)."""
        return [memoryview(m)[5:] for m in self.messages]

    def framed(self) -> list[bytes]:
        """Every alert in the Confluent wire format (:attr:`messages`)."""
        return self.messages

    @property
    def nbytes(self) -> int:
        """Bytes of the Avro bodies."""
        return sum(len(m) for m in self.messages) - 5 * len(self.messages)


def _key_index(sorted_keys: NDArray[np.int64], keys: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    i = np.searchsorted(sorted_keys, keys)
    i_clip = np.minimum(i, max(sorted_keys.size - 1, 0))
    found = (i < sorted_keys.size) & (sorted_keys[i_clip] == keys) if sorted_keys.size else np.zeros(keys.size, bool)
    return i_clip, found


def _ids(table: pa.Table, name: str) -> NDArray[np.int64]:
    col = table.column(name)
    return np.asarray(_filled(col, -1), dtype=np.int64)


def _filled(col: Any, value: float) -> NDArray[Any]:
    """A column as numpy with its nulls replaced by ``value``."""
    out: NDArray[Any] = col.fill_null(value).to_numpy(zero_copy_only=False)
    return out


def _concat(tables: Sequence[pa.Table | None]) -> pa.Table | None:
    present = [t for t in tables if t is not None and t.num_rows]
    if not present:
        return next((t for t in tables if t is not None), None)
    if len(present) == 1:
        return present[0]
    common = [c for c in present[0].column_names if all(c in t.column_names for t in present[1:])]
    return pa.concat_tables([t.select(common) for t in present], promote_options="permissive")


@dataclass
class _History:
    rows: EncodedRows
    object_ids: NDArray[np.int64]  # sorted
    lo: NDArray[np.intp]  # per alert
    hi: NDArray[np.intp]
    first_bad: NDArray[np.intp]  # per alert: index of the first bad row in [lo, hi), or -1
    problems: RowProblems
    row_ids: NDArray[np.int64]


class EncodedCache:
    """Encoded DiaSource / DiaForcedSource rows kept for later alerts' histories.

    A source is encoded once, when it is new, and its bytes are reused in the
    ``prvDiaSources`` (``prvDiaForcedSources``) of every later alert of its
    object. The cache holds at most ``max_bytes`` of row bytes and forgets the
    oldest rows first. It assumes rows do not change after they are written;
    call :meth:`discard` for rows that do (a DiaSource reassociated to a
    solar-system object, a withdrawn source).

    Parameters
    ----------
    max_bytes : int
        Bound on the cached row bytes (default 512 MiB: about 1.3 million DiaSources).
    """

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._rows: dict[str, dict[int, bytes]] = {"diaSource": {}, "diaForcedSource": {}}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return sum(len(d) for d in self._rows.values())

    def get_many(self, kind: str, ids: list[int]) -> list[bytes | None]:
        got = list(map(self._rows[kind].get, ids))
        missing = got.count(None)
        self.misses += missing
        self.hits += len(got) - missing
        return got

    def put_many(self, kind: str, ids: list[int], rows: EncodedRows, good: NDArray[np.bool_] | None = None) -> None:
        view, off = memoryview(rows.data), rows.offsets.tolist()
        ok = good.tolist() if good is not None else [True] * len(ids)
        store = self._rows[kind]
        for i, key in enumerate(ids):
            if ok[i] and key not in store:
                b = bytes(view[off[i] : off[i + 1]])
                store[key] = b
                self.nbytes += len(b)
        while self.nbytes > self.max_bytes and any(self._rows.values()):
            biggest = max(self._rows.values(), key=len)
            self.nbytes -= len(biggest.pop(next(iter(biggest))))

    def discard(self, kind: str, ids: Sequence[int]) -> None:
        """Forget rows (``kind`` is ``"diaSource"`` or ``"diaForcedSource"``)."""
        for i in ids:
            b = self._rows[kind].pop(int(i), None)
            if b is not None:
                self.nbytes -= len(b)


class AlertEncoder:
    """Builds alert packets of one schema version from APDB tables.

    Parameters
    ----------
    schema : AlertSchema or version, optional
        Default: the latest schema ``lsst-alert-packet`` ships.
    history_days : float
        Depth of the histories (12 months).
    cache : EncodedCache or bool, optional
        Keep each new source's bytes for later histories (``True``: a new
        default-sized cache). Without one, histories are encoded from the
        preload on every build.

    Examples
    --------
    >>> enc = AlertEncoder()  # doctest: +SKIP
    >>> batch = enc.build(sources, objects, preload=preload, cutouts=cutouts)  # doctest: +SKIP
    >>> batch.framed()[0][:5]  # magic byte + schema id 1101  # doctest: +SKIP
    b'\\x00\\x00\\x00\\x04M'
    """

    def __init__(
        self,
        schema: AlertSchema | tuple[int, int] | str | None = None,
        history_days: float = HISTORY_DAYS,
        cache: EncodedCache | bool | None = None,
    ) -> None:
        self.schema = schema if isinstance(schema, AlertSchema) else AlertSchema.load(schema)
        self.cache = EncodedCache() if cache is True else (cache if isinstance(cache, EncodedCache) else None)
        self.history_days = history_days
        self.source = _encoder(self.schema, "diaSource")
        self.forced = _encoder(self.schema, "prvDiaForcedSources")
        self.object = _encoder(self.schema, "diaObject")
        self._layout = _layout(self.schema)

    def build(
        self,
        sources: Any,
        objects: Any = None,
        *,
        preload: Any = None,
        forced_sources: Any = None,
        cutouts: Sequence[Cutouts | None] | Callable[[int], Cutouts | None] | None = None,
        observation_reason: str | None = None,
        target_name: str | None = None,
    ) -> AlertBatch:
        """One alert per row of ``sources`` (the new DiaSources).

        Parameters
        ----------
        sources : pyarrow or astropy Table
            New DiaSources (APDB ``DiaSource`` columns).
        objects : Table, optional
            New DiaObject versions; ``validityStartMjdTai`` defaults to the
            source's ``midpointMjdTai`` when the column is absent.
        preload : Preload or (objects, sources, forced_sources), optional
            The field's preload: DiaObjects, DiaSource and DiaForcedSource history.
        forced_sources : Table, optional
            New forced sources of the visit (only rows before a source's time
            enter its ``prvDiaForcedSources``).
        cutouts : sequence aligned with ``sources``, or callable(row) -> Cutouts, optional
        observation_reason, target_name : str, optional
            The scheduler's reason and target of the visit (RTN-097).

        Returns
        -------
        AlertBatch
            Good alerts, and the rows that could not become alerts (``bad``).

        Raises
        ------
        AlertSchemaError
            A table lacks a column the schema requires, or has one of the wrong type.
        """
        src = as_arrow(sources)
        n = src.num_rows
        pre_obj = pre_src = pre_forced = None
        if preload is not None:
            if isinstance(preload, tuple):
                pre_obj, pre_src, pre_forced = (as_arrow(t) if t is not None else None for t in preload)
            else:
                pre_obj, pre_src, pre_forced = preload.objects, preload.sources, preload.forced_sources
        src_ids = _ids(src, "diaSourceId")
        obj_of = _ids(src, "diaObjectId") if "diaObjectId" in src.column_names else np.full(n, -1, np.int64)
        times = np.asarray(_filled(src.column("midpointMjdTai"), np.nan), np.float64)
        visits = _ids(src, "visit") if "visit" in src.column_names else np.full(n, -1, np.int64)
        detectors = _ids(src, "detector") if "detector" in src.column_names else np.full(n, -1, np.int64)

        # New DiaSources: one encode, one validation.
        src_rows = self.source.encode(src)
        src_problems = self.source.problems(src)

        # DiaObjects: new versions first, then the preload's; the latest per object wins.
        obj_table = None
        if objects is not None:
            new_obj = as_arrow(objects)
            if "validityStartMjdTai" not in new_obj.column_names and new_obj.num_rows:
                start = _object_times(new_obj, obj_of, times)
                new_obj = new_obj.append_column("validityStartMjdTai", pa.array(start))
            obj_table = new_obj
        obj_table = _concat([obj_table, pre_obj])
        obj_index = np.full(n, -1, np.intp)
        obj_rows = obj_problems = None
        obj_ids_used = np.zeros(0, np.int64)
        if obj_table is not None and obj_table.num_rows:
            all_ids = _ids(obj_table, "diaObjectId")
            uniq, first = np.unique(all_ids, return_index=True)  # first occurrence = newest (new table first)
            i, found = _key_index(uniq, obj_of)
            wanted = np.unique(i[found])
            take = first[wanted]
            used = obj_table.take(take)
            obj_rows = self.object.encode(used)
            obj_problems = self.object.problems(used)
            obj_ids_used = uniq[wanted]
            j, found2 = _key_index(obj_ids_used, obj_of)
            obj_index = np.where(found2 & (obj_of >= 0), j, -1)

        new_ids = np.sort(src_ids)
        new_forced = as_arrow(forced_sources) if forced_sources is not None else None
        prv = self._history(self.source, pre_src, obj_of, times, "diaSourceId", exclude=new_ids)
        frc = self._history(self.forced, _concat([pre_forced, new_forced]), obj_of, times, "diaForcedSourceId",
                            exclude=None)
        if self.cache is not None:
            self.cache.put_many("diaSource", src_ids.tolist(), src_rows, ~src_problems.bad)
            if new_forced is not None and new_forced.num_rows:
                self.cache.put_many("diaForcedSource", _ids(new_forced, "diaForcedSourceId").tolist(),
                                    self.forced.encode(new_forced), ~self.forced.problems(new_forced).bad)

        # Per-alert verdicts: the first problem found is reported.
        bad: list[BadAlert] = []
        bad_mask = np.zeros(n, bool)

        def report(mask: NDArray[np.bool_], describe: Callable[[int], tuple[str, str]]) -> None:
            for i in np.flatnonzero(mask & ~bad_mask):
                where, why = describe(int(i))
                bad.append(BadAlert(int(src_ids[i]), _opt(visits[i]), _opt(detectors[i]), where, why))
            bad_mask[mask] = True

        report(src_problems.bad, lambda i: (f"diaSource.{src_problems.field[i]}", str(src_problems.reason[i])))
        if obj_rows is not None and obj_problems is not None:
            obj_bad = (obj_index >= 0) & obj_problems.bad[np.maximum(obj_index, 0)]
            report(obj_bad, lambda i: (f"diaObject.{obj_problems.field[obj_index[i]]}",
                                       str(obj_problems.reason[obj_index[i]])))
        histories = (("prvDiaSources", prv, "diaSourceId"), ("prvDiaForcedSources", frc, "diaForcedSourceId"))
        for label, h_opt, idname in histories:
            if h_opt is None:
                continue
            h = h_opt

            def history_problem(i: int, hh: _History = h, label: str = label, idname: str = idname) -> tuple[str, str]:
                r = int(hh.first_bad[i])
                return f"{label}[{idname}={hh.row_ids[r]}].{hh.problems.field[r]}", str(hh.problems.reason[r])

            report(h.first_bad >= 0, history_problem)

        messages = self._assemble(n, bad_mask, src_rows, src_ids, obj_rows, obj_index, prv, frc, cutouts,
                                  observation_reason, target_name)
        good = ~bad_mask
        return AlertBatch(self.schema, messages, src_ids[good], visits[good], detectors[good], times[good], bad)

    def _history(
        self,
        enc: RecordEncoder,
        table: pa.Table | None,
        obj_of: NDArray[np.int64],
        times: NDArray[np.float64],
        id_name: str,
        exclude: NDArray[np.int64] | None,
    ) -> _History | None:
        n = obj_of.size
        if table is None or table.num_rows == 0:
            return None
        h_obj = _ids(table, "diaObjectId")
        h_t = np.asarray(_filled(table.column("midpointMjdTai"), np.nan), np.float64)
        h_id = _ids(table, id_name)
        # The latest alert time per object bounds its history (objects with several new sources share it).
        order = np.argsort(obj_of, kind="stable")
        alert_obj = obj_of[order]
        uniq_obj, starts = np.unique(alert_obj, return_index=True)
        t_max = np.maximum.reduceat(times[order], starts) if n else np.zeros(0)
        k, found = _key_index(uniq_obj, h_obj)
        t_ref = np.where(found, t_max[k] if uniq_obj.size else 0.0, np.nan)
        keep = found & (h_obj >= 0) & (h_t < t_ref) & (h_t >= t_ref - self.history_days)
        if exclude is not None and exclude.size:
            keep &= ~np.isin(h_id, exclude)
        # Each id once (the preload and the new rows may overlap).
        idx = np.flatnonzero(keep)
        _, first = np.unique(h_id[idx], return_index=True)
        idx = idx[np.sort(first)]
        idx = idx[np.lexsort((h_t[idx], h_obj[idx]))]
        kind = "diaSource" if id_name == "diaSourceId" else "diaForcedSource"
        if self.cache is None:
            used = table.take(idx)
            rows = enc.encode(used)
            problems = enc.problems(used)
        else:
            rows, problems = _cached_rows(self.cache, enc, table, idx, h_id[idx].tolist(), kind)
        sorted_obj = h_obj[idx]
        lo = np.searchsorted(sorted_obj, obj_of, "left")
        hi = np.searchsorted(sorted_obj, obj_of, "right")
        hi = np.where(obj_of >= 0, hi, lo)
        # First bad row in [lo, hi) per alert, from the running count of bad rows.
        cum = np.concatenate([[0], np.cumsum(problems.bad)])
        has_bad = cum[hi] > cum[lo]
        first_bad = np.where(has_bad, np.searchsorted(cum, cum[lo] + 1, "left") - 1, -1)
        return _History(rows, sorted_obj, lo, hi, first_bad, problems, h_id[idx])

    def _assemble(
        self,
        n: int,
        bad: NDArray[np.bool_],
        src_rows: EncodedRows,
        src_ids: NDArray[np.int64],
        obj_rows: EncodedRows | None,
        obj_index: NDArray[np.intp],
        prv: _History | None,
        frc: _History | None,
        cutouts: Sequence[Cutouts | None] | Callable[[int], Cutouts | None] | None,
        observation_reason: str | None,
        target_name: str | None,
    ) -> list[bytes]:
        """Join each good alert, framed, from ~15 byte slices, one column of slices per schema field."""
        good = np.flatnonzero(~bad)
        g = good.tolist()
        empty = b""
        # A list per alert, or one constant for all; first the Confluent framing.
        cols: list[list[bytes | memoryview] | bytes] = [_MAGIC + self.schema.schema_id.to_bytes(4, "big")]

        def slices(rows: EncodedRows, index: list[int]) -> list[bytes | memoryview]:
            view, off = memoryview(rows.data), rows.offsets.tolist()
            return [view[off[i] : off[i + 1]] for i in index]

        if cutouts is None:
            cut_list: list[Cutouts | None] = [None] * len(g)
        elif callable(cutouts):
            cut_list = [cutouts(i) for i in g]
        else:
            if len(cutouts) != n:
                raise ValueError(f"cutouts has {len(cutouts)} entries for {n} sources; give one (or None) per source")
            cut_list = [cutouts[i] for i in g]

        for kind, prefix_value, prefix_null in self._layout:
            if kind == "id":
                idv, idn = encode_long(src_ids[good])
                cols.append([bytes(r[:k]) for r, k in zip(idv, idn.tolist(), strict=True)])
            elif kind == "diaSource":
                if prefix_value:
                    cols.append(prefix_value)
                cols.append(slices(src_rows, g))
            elif kind == "diaObject":
                oi = obj_index[good].tolist()
                if obj_rows is None:
                    cols.append(prefix_null)
                    continue
                view, off = memoryview(obj_rows.data), obj_rows.offsets.tolist()
                cols.append([prefix_value if j >= 0 else prefix_null for j in oi])
                cols.append([view[off[j] : off[j + 1]] if j >= 0 else empty for j in oi])
            elif kind in ("prvDiaSources", "prvDiaForcedSources"):
                h = prv if kind == "prvDiaSources" else frc
                if h is None:
                    cols.append(prefix_null)  # no history: null (see docs/alerts.md)
                    continue
                lo, hi = h.lo[good], h.hi[good]
                has = (hi > lo).tolist()
                cv, cn = encode_long((hi - lo).astype(np.int64))
                view, off = memoryview(h.rows.data), h.rows.offsets.tolist()
                lo_l, hi_l = lo.tolist(), hi.tolist()
                cols.append([prefix_value + bytes(r[:k]) if y else prefix_null
                             for r, k, y in zip(cv, cn.tolist(), has, strict=True)])
                cols.append([view[off[a] : off[b]] if y else empty for a, b, y in zip(lo_l, hi_l, has, strict=True)])
                cols.append([b"\x00" if y else empty for y in has])
            elif kind in ("observation_reason", "target_name"):
                value = observation_reason if kind == "observation_reason" else target_name
                if value is None:
                    cols.append(prefix_null)
                else:
                    raw = value.encode()
                    cols.append(prefix_value + _varint(len(raw)) + raw)
            elif kind in _CUTOUT_ATTR:
                attr = _CUTOUT_ATTR[kind]
                datas = [getattr(c, attr) if c is not None else None for c in cut_list]
                sizes = np.fromiter((0 if d is None else len(d) for d in datas), dtype=np.int64, count=len(datas))
                lv, ln = encode_long(sizes)
                heads = [prefix_value + bytes(r[:k]) for r, k in zip(lv, ln.tolist(), strict=True)] if datas else []
                cols.append([prefix_null if d is None else h for d, h in zip(datas, heads, strict=True)])
                cols.append([empty if d is None else d for d in datas])
            else:  # a nullable field nightshift does not fill (ssSource, mpc_orbits, ...)
                cols.append(prefix_null)
        # Merge runs of constants, then join per alert.
        merged: list[list[bytes | memoryview] | bytes] = []
        for c in cols:
            if isinstance(c, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] = merged[-1] + c
            else:
                merged.append(c)
        m = len(g)
        per_alert = [[c] * m if isinstance(c, bytes) else c for c in merged]
        join = empty.join
        return [join(parts) for parts in zip(*per_alert, strict=True)]


def _cached_rows(
    cache: EncodedCache, enc: RecordEncoder, table: pa.Table, idx: NDArray[np.intp], ids: list[int], kind: str
) -> tuple[EncodedRows, RowProblems]:
    """Rows ``idx`` of ``table``: cached bytes where present, the others encoded (and cached if good)."""
    got = cache.get_many(kind, ids)
    missing = (
        np.fromiter(map(_is_none, got), dtype=bool, count=len(got)) if None in got else np.zeros(len(got), bool)
    )
    k = idx.size
    bad = np.zeros(k, bool)
    field = np.full(k, None, dtype=object)
    reason = np.full(k, None, dtype=object)
    if missing.any():
        pos = np.flatnonzero(missing)
        sub = table.take(idx[pos])
        fresh = enc.encode(sub)
        p = enc.problems(sub)
        bad[pos], field[pos], reason[pos] = p.bad, p.field, p.reason
        sub_ids = [ids[i] for i in pos.tolist()]
        cache.put_many(kind, sub_ids, fresh, ~p.bad)
        for j, i in enumerate(pos.tolist()):
            got[i] = fresh.row(j)
    pieces: list[bytes] = got  # type: ignore[assignment]  # no None is left
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=k)
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EncodedRows(b"".join(pieces), offsets), RowProblems(bad, field, reason)


def _is_none(x: object) -> bool:
    return x is None


_CUTOUT_ATTR = {"cutoutDifference": "difference", "cutoutScience": "science", "cutoutTemplate": "template"}


def _opt(v: Any) -> int | None:
    return None if int(v) < 0 else int(v)


def _varint(v: int) -> bytes:
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _object_times(objects: pa.Table, obj_of: NDArray[np.int64], times: NDArray[np.float64]) -> NDArray[np.float64]:
    """``validityStartMjdTai`` of new DiaObject versions: their new source's time (else NaN)."""
    ids = _ids(objects, "diaObjectId")
    order = np.argsort(obj_of, kind="stable")
    k, found = _key_index(obj_of[order], ids)
    return np.where(found, times[order][k] if obj_of.size else np.nan, np.nan)


def _record_of(schema: AlertSchema, name: str) -> dict[str, Any]:
    return schema.record(name)


@cache
def _encoder(schema: AlertSchema, name: str) -> RecordEncoder:
    return RecordEncoder(_record_of(schema, name))


@cache
def _layout(schema: AlertSchema) -> tuple[tuple[str, bytes, bytes], ...]:
    """(kind, value-branch prefix, null-branch prefix) of every top-level alert field, in order."""
    out = []
    for f in schema.definition["fields"]:
        name, t = f["name"], f["type"]
        if isinstance(t, list):
            if "null" not in t or len(t) != 2:
                raise AlertSchemaError(f"alert field {name}: union {t!r} is not [null, T]")
            ni = t.index("null")
            value_p, null_p = bytes([2 * (1 - ni)]), bytes([2 * ni])
        else:
            value_p, null_p = b"", b""
        if name in ("diaSourceId", "alertId"):
            kind = "id"
        elif name in ("diaSource", "diaObject", "prvDiaSources", "prvDiaForcedSources", "observation_reason",
                      "target_name") or name.startswith("cutout") and name in _CUTOUT_ATTR:
            kind = name
        elif isinstance(t, list):
            kind = "null"
        else:
            raise AlertSchemaError(f"alert schema {schema.version}: required field {name!r} cannot be filled")
        optional = ("diaObject", "prvDiaSources", "prvDiaForcedSources", "observation_reason", "target_name", "null")
        if (kind in optional or kind in _CUTOUT_ATTR) and not isinstance(t, list):
            raise AlertSchemaError(
                f"alert schema {schema.version}: field {name!r} is required; nightshift needs it nullable"
            )
        out.append((kind, value_p, null_p))
    return tuple(out)

