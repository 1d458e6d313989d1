"""A plain dict-by-dict alert builder: the reference the column-wise encoder is checked against."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from nightshift.alerts import Cutouts


def reference_alerts(
    sources: pa.Table,
    objects: pa.Table | None,
    preload: tuple[pa.Table | None, pa.Table | None, pa.Table | None],
    cutouts: list[Cutouts | None] | None,
    history_days: float = 365.0,
) -> list[dict[str, Any]]:
    new = sources.to_pylist()
    new_ids = {s["diaSourceId"] for s in new}
    obj_rows: dict[int, dict[str, Any]] = {}
    for table in (objects, preload[0]):
        for row in table.to_pylist() if table is not None else []:
            obj_rows.setdefault(row["diaObjectId"], row)
    latest: dict[int, float] = {}
    for s in new:
        if s["diaObjectId"] is not None:
            latest[s["diaObjectId"]] = max(latest.get(s["diaObjectId"], -1e300), s["midpointMjdTai"])

    def history(table: pa.Table | None, id_name: str, exclude: set[int]) -> dict[int, list[dict[str, Any]]]:
        seen: set[int] = set()
        out: dict[int, list[dict[str, Any]]] = {}
        for row in table.to_pylist() if table is not None else []:
            obj = row["diaObjectId"]
            if obj not in latest or row[id_name] in exclude or row[id_name] in seen:
                continue
            t = latest[obj]
            if t - history_days <= row["midpointMjdTai"] < t:
                seen.add(row[id_name])
                out.setdefault(obj, []).append(row)
        for rows in out.values():
            rows.sort(key=lambda r: r["midpointMjdTai"])
        return out

    prv = history(preload[1], "diaSourceId", new_ids)
    frc = history(preload[2], "diaForcedSourceId", set())
    alerts = []
    for i, s in enumerate(new):
        obj = obj_rows.get(s["diaObjectId"]) if s["diaObjectId"] is not None else None
        if obj is not None and obj.get("validityStartMjdTai") is None:
            obj = {**obj, "validityStartMjdTai": s["midpointMjdTai"]}
        cut = cutouts[i] if cutouts is not None else None
        alerts.append({
            "diaSourceId": s["diaSourceId"],
            "observation_reason": None,
            "target_name": None,
            "diaSource": s,
            "prvDiaSources": prv.get(s["diaObjectId"]) or None,
            "prvDiaForcedSources": frc.get(s["diaObjectId"]) or None,
            "diaObject": obj,
            "ssSource": None,
            "mpc_orbits": None,
            "cutoutDifference": cut.difference if cut else None,
            "cutoutScience": cut.science if cut else None,
            "cutoutTemplate": cut.template if cut else None,
        })
    return alerts
