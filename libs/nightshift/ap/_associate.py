"""Association of DIA sources with the preloaded DIA objects, and DIA object summary statistics.

* Match: sources and objects as unit vectors in a k-d tree; every pair closer
  than ``radius_arcsec`` is a candidate.
* One-to-one: the candidate pairs are resolved by minimum total distance
  (:func:`scipy.optimize.linear_sum_assignment`, the Hungarian algorithm) so
  no object takes two sources of one visit and no source two objects.
* New objects: an unmatched source starts a DIA object whose id is the
  source's own ``diaSourceId`` (deterministic from (visit, detector, index)).
* Summary: every touched object gets a new row computed from its preloaded
  source history plus the new sources: mean position, per band the
  inverse-variance weighted mean PSF flux and its error, the flux scatter,
  count, min, max, mean error, science-flux mean, ``nDiaSources`` and the
  first / last source times (pyarrow group-by aggregations, no Python loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from ._exceptions import ApInputError
from ._rows import apdb_rows

__all__ = ["AssociationResult", "associate", "dia_object_summary"]

BANDS = ("u", "g", "r", "i", "z", "y")


def _unit(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
    r, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


@dataclass
class AssociationResult:
    """Output of :func:`associate`.

    Attributes
    ----------
    sources : pyarrow.Table
        The DIA sources with ``diaObjectId`` set.
    objects : pyarrow.Table
        New versions of every touched DIA object (matched or new), without the validity columns.
    matched_object_ids, new_object_ids : numpy.ndarray
        Ids of preloaded objects that got a source, and of objects created.
    diagnostics : dict
        Candidate pairs, matched, new, ambiguous (sources with more than one candidate).
    """

    sources: pa.Table
    objects: pa.Table
    matched_object_ids: NDArray[np.int64]
    new_object_ids: NDArray[np.int64]
    diagnostics: dict[str, Any] = field(default_factory=dict)


def associate(sources: pa.Table, objects: pa.Table | None, history: pa.Table | None = None, *,
              radius_arcsec: float = 1.0) -> AssociationResult:
    """Associate a visit's DIA sources with the preloaded DIA objects one-to-one.

    Parameters
    ----------
    sources : pyarrow.Table
        DiaSource rows of one (visit, detector) (``diaSourceId``, ``ra``, ``dec`` and the measurements).
    objects : pyarrow.Table or None
        Preloaded DiaObject rows (``diaObjectId``, ``ra``, ``dec``); None or empty for a new field.
    history : pyarrow.Table, optional
        Preloaded DiaSource history of those objects, for the summary statistics.
    radius_arcsec : float
        Match radius.

    Returns
    -------
    AssociationResult
        Sources with object ids, and the new object versions.

    Raises
    ------
    ApInputError
        If ``radius_arcsec`` is not positive or a table lacks ``ra``/``dec``.
    """
    if radius_arcsec <= 0:
        raise ApInputError(f"radius_arcsec must be positive, got {radius_arcsec}")
    for name, t in (("sources", sources), ("objects", objects)):
        if t is not None and not {"ra", "dec"} <= set(t.schema.names):
            raise ApInputError(f"{name} needs ra and dec columns")
    n = sources.num_rows
    src_ids = np.asarray(sources["diaSourceId"].to_numpy(), np.int64)
    obj_of_src = np.full(n, -1, np.int64)
    diag: dict[str, Any] = {"n_sources": n}
    if n and objects is not None and objects.num_rows:
        su = _unit(sources["ra"].to_numpy(), sources["dec"].to_numpy())
        ou = _unit(objects["ra"].to_numpy(), objects["dec"].to_numpy())
        chord = 2 * np.sin(np.radians(radius_arcsec / 3600.0) / 2)
        pairs = cKDTree(su).sparse_distance_matrix(cKDTree(ou), chord, output_type="ndarray")
        diag["candidate_pairs"] = int(pairs.size)
        if pairs.size:
            rows, cols = np.unique(pairs["i"]), np.unique(pairs["j"])
            ri = np.searchsorted(rows, pairs["i"])
            ci = np.searchsorted(cols, pairs["j"])
            big = 1e3 * chord + 1.0
            cost = np.full((rows.size, cols.size), big)
            cost[ri, ci] = pairs["v"]
            a, b = linear_sum_assignment(cost)
            ok = cost[a, b] < big
            obj_ids = np.asarray(objects["diaObjectId"].to_numpy(), np.int64)
            obj_of_src[rows[a[ok]]] = obj_ids[cols[b[ok]]]
            diag["ambiguous_sources"] = int((np.bincount(ri) > 1).sum())
    matched = obj_of_src >= 0
    new_ids = src_ids[~matched]
    obj_of_src[~matched] = new_ids
    diag.update(n_matched=int(matched.sum()), n_new=int((~matched).sum()))
    col = sources.schema.get_field_index("diaObjectId")
    out = sources.set_column(col, sources.schema.field(col), pa.array(obj_of_src, pa.int64()))
    touched = np.unique(obj_of_src)
    objs = dia_object_summary(out, history, touched)
    return AssociationResult(out, objs, np.unique(obj_of_src[matched]), new_ids, diag)


def dia_object_summary(sources: pa.Table, history: pa.Table | None, object_ids: NDArray[np.int64]) -> pa.Table:
    """DiaObject rows summarising the sources (history + new) of ``object_ids``.

    Parameters
    ----------
    sources : pyarrow.Table
        New DiaSource rows with ``diaObjectId`` set.
    history : pyarrow.Table or None
        Earlier DiaSource rows (only those of ``object_ids`` are used).
    object_ids : numpy.ndarray
        Objects to summarise.

    Returns
    -------
    pyarrow.Table
        One DiaObject row per id (validity columns left to the APDB store).
    """
    cols = ["diaObjectId", "ra", "dec", "psfFlux", "psfFluxErr", "scienceFlux", "scienceFluxErr", "band",
            "midpointMjdTai"]
    parts = [sources.select(cols)]
    if history is not None and history.num_rows:
        h = history.filter(pc.is_in(history["diaObjectId"], pa.array(object_ids, pa.int64()))).select(cols)
        parts.append(h.cast(parts[0].schema))
    t = pa.concat_tables(parts)
    t = t.filter(pc.is_in(t["diaObjectId"], pa.array(object_ids, pa.int64())))
    # position: mean of unit vectors
    u = _unit(t["ra"].to_numpy(), t["dec"].to_numpy())
    f = t["psfFlux"].to_numpy(zero_copy_only=False).astype(np.float64)
    e = t["psfFluxErr"].to_numpy(zero_copy_only=False).astype(np.float64)
    w = np.where(np.isfinite(f) & np.isfinite(e) & (e > 0), 1.0 / np.where(e > 0, e, 1.0) ** 2, 0.0)
    sf = t["scienceFlux"].to_numpy(zero_copy_only=False).astype(np.float64)
    se = t["scienceFluxErr"].to_numpy(zero_copy_only=False).astype(np.float64)
    sw = np.where(np.isfinite(sf) & np.isfinite(se) & (se > 0), 1.0 / np.where(se > 0, se, 1.0) ** 2, 0.0)
    band = np.asarray(["" if b is None else b for b in t["band"].to_pylist()], object)
    cols_aux: dict[str, Any] = {
        "id": t["diaObjectId"].to_numpy(), "band": band,
        "ux": u[:, 0], "uy": u[:, 1], "uz": u[:, 2], "one": np.ones(t.num_rows),
        "w": w, "wf": np.where(w > 0, w * np.nan_to_num(f), 0.0), "f": np.where(w > 0, f, np.nan),
        "e": np.where(w > 0, e, np.nan), "sw": sw, "swf": np.where(sw > 0, sw * np.nan_to_num(sf), 0.0),
        "t": t["midpointMjdTai"].to_numpy(),
    }
    aux = pa.table({k: pa.array(v) for k, v in cols_aux.items()})
    pos = aux.group_by("id").aggregate([("ux", "sum"), ("uy", "sum"), ("uz", "sum"), ("one", "sum"),
                                        ("t", "min"), ("t", "max")])
    ids = pos["id"].to_numpy()
    order = np.argsort(ids)
    ids = ids[order]
    ux, uy, uz = (pos[c].to_numpy()[order] for c in ("ux_sum", "uy_sum", "uz_sum"))
    ra = np.degrees(np.arctan2(uy, ux)) % 360.0
    dec = np.degrees(np.arctan2(uz, np.hypot(ux, uy)))
    values: dict[str, Any] = {
        "diaObjectId": ids, "ra": ra, "dec": dec,
        "nDiaSources": pos["one_sum"].to_numpy()[order].astype(np.int32),
        "firstDiaSourceMjdTai": pos["t_min"].to_numpy()[order],
        "lastDiaSourceMjdTai": pos["t_max"].to_numpy()[order],
    }
    per_band = aux.group_by(["id", "band"]).aggregate([
        ("w", "sum"), ("wf", "sum"), ("f", "stddev"), ("f", "count"), ("f", "min"), ("f", "max"), ("e", "mean"),
        ("sw", "sum"), ("swf", "sum"),
    ])
    pb_id = per_band["id"].to_numpy()
    pb_band = np.asarray(per_band["band"].to_pylist(), object)
    for b in BANDS:
        sel = pb_band == b
        idx = np.searchsorted(ids, pb_id[sel])

        def col(name: str, fill: float = np.nan, sel: NDArray[np.bool_] = sel,
                idx: NDArray[np.intp] = idx) -> NDArray[np.float64]:
            out = np.full(ids.size, fill)
            out[idx] = np.asarray(per_band[name].to_numpy(zero_copy_only=False), float)[sel]
            return out

        wsum, wfsum = col("w_sum", 0.0), col("wf_sum", 0.0)
        swsum, swfsum = col("sw_sum", 0.0), col("swf_sum", 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[f"{b}_psfFluxMean"] = np.where(wsum > 0, wfsum / wsum, np.nan)
            values[f"{b}_psfFluxMeanErr"] = np.where(wsum > 0, 1 / np.sqrt(wsum), np.nan)
            values[f"{b}_scienceFluxMean"] = np.where(swsum > 0, swfsum / swsum, np.nan)
            values[f"{b}_scienceFluxMeanErr"] = np.where(swsum > 0, 1 / np.sqrt(swsum), np.nan)
        values[f"{b}_psfFluxSigma"] = col("f_stddev")
        values[f"{b}_psfFluxNdata"] = col("f_count", 0.0).astype(np.int32)
        values[f"{b}_psfFluxMin"] = col("f_min")
        values[f"{b}_psfFluxMax"] = col("f_max")
        values[f"{b}_psfFluxErrMean"] = col("e_mean")
    full = apdb_rows("DiaObject", ids.size, {**values, "validityStartMjdTai": values["lastDiaSourceMjdTai"]})
    return full.drop_columns(["validityStartMjdTai", "validityEndMjdTai"])
