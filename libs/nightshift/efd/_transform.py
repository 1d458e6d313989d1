"""The transform from the base EFD to per-visit summaries (the "transformed" EFD, REQ-0042).

Definition (``TRANSFORM_VERSION`` 1): for each visit of the instrument with a
timespan ``[begin, end)`` in the registry, and each topic, the row of
``transformed_<topic>`` holds the number of base samples with
``begin <= time < end``, and for each field their mean (column named like the
field), minimum and maximum; ``time_ns`` is the visit's mid-time. A visit with
no samples gets ``n_samples = 0`` and NULL statistics, so "no data" is
recorded rather than silently missing.

Re-runnable: each run replaces the rows of the visits it covers in one
transaction per topic, so running it twice gives the same table, and running it
after late base samples arrive updates the summaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._store import Efd, iter_visit_windows
from ._topics import TOPICS, get_topic

if TYPE_CHECKING:
    from ..butler.registry import Registry

__all__ = ["TRANSFORM_VERSION", "TransformReport", "transform_visits"]

#: Version of the transform's definition, stored on every row it writes.
TRANSFORM_VERSION = 1


@dataclass(frozen=True)
class TransformReport:
    """What one run of :func:`transform_visits` wrote.

    Attributes
    ----------
    visits : tuple of int
        Visits summarised.
    rows : dict of str to int
        Rows written per topic (one per visit).
    empty : dict of str to tuple of int
        Per topic, the visits that had no base samples.
    """

    visits: tuple[int, ...]
    rows: dict[str, int]
    empty: dict[str, tuple[int, ...]]


def transform_visits(
    efd: Efd,
    registry: Registry,
    *,
    instrument: str,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    topics: Sequence[str] | None = None,
) -> TransformReport:
    """Summarise the base EFD over each visit's timespan into the transformed tables.

    Parameters
    ----------
    efd : Efd
        The EFD (both forms live in it).
    registry : Registry
        Where the visits' timespans come from.
    instrument : str
        Instrument of the visits.
    where, bind : optional
        Restrict the visits (a registry ``where`` on the visit, e.g. ``"visit.day_obs = 20250101"``).
    topics : sequence of str, optional
        Topics to transform (all by default).

    Returns
    -------
    TransformReport
        Visits and rows written.
    """
    names = list(topics) if topics is not None else sorted(TOPICS)
    for name in names:
        get_topic(name)
    windows = [(v, b, e) for v, b, e, _ in iter_visit_windows(registry, instrument, where, bind)]
    rows_written: dict[str, int] = {}
    empty: dict[str, tuple[int, ...]] = {}
    if not windows:
        return TransformReport((), dict.fromkeys(names, 0), {n: () for n in names})
    for name in names:
        spec = get_topic(name)
        base, out = efd.base_tables[name], efd.transformed_tables[name]
        win = sa.values(
            sa.column("visit", sa.BigInteger), sa.column("begin_ns", sa.BigInteger),
            sa.column("end_ns", sa.BigInteger), name="win",
        ).data(windows)
        aggregates = [
            agg(base.c[f]).label(f"{f}{suffix}")
            for f in spec.fields for agg, suffix in ((sa.func.avg, ""), (sa.func.min, "_min"), (sa.func.max, "_max"))
        ]
        stmt = (
            sa.select(win.c.visit, sa.func.count(base.c.time_ns).label("n_samples"), *aggregates)
            .select_from(win.outerjoin(base, sa.and_(base.c.time_ns >= win.c.begin_ns, base.c.time_ns < win.c.end_ns)))
            .group_by(win.c.visit)
        )
        spans = {v: (b, e) for v, b, e in windows}
        with efd._connect(begin=True) as conn:
            stats = {r.visit: r._mapping for r in conn.execute(stmt)}
            conn.execute(out.delete().where(out.c.instrument == instrument, out.c.visit.in_(list(spans))))
            rows = []
            for visit, (b, e) in spans.items():
                m = stats[visit]
                rows.append({
                    "instrument": instrument, "visit": visit, "begin_ns": b, "end_ns": e, "time_ns": (b + e) // 2,
                    "n_samples": int(m["n_samples"]), "transform_version": TRANSFORM_VERSION,
                    **{c: (float(m[c]) if m[c] is not None else None)
                       for f in spec.fields for c in (f, f"{f}_min", f"{f}_max")},
                })
            conn.execute(out.insert(), rows)
        rows_written[name] = len(rows)
        empty[name] = tuple(sorted(v for v, m in stats.items() if int(m["n_samples"]) == 0))
    return TransformReport(tuple(v for v, _, _ in windows), rows_written, empty)
