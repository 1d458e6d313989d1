"""Prompt-processing pre-flight: from a ``nextVisit`` to one Alert Production quantum per detector.

While the shutter is open (or before it opens) the planner knows the
boresight, rotation and filter of the coming exposure, so it can decide

1. **which detectors see the field** -- each detector's sky footprint comes
   from the camera geometry (:meth:`nightshift.obs.Camera.sky_corners`, the
   projection the simulator's per-detector WCS uses too); a detector sees the
   field when its footprint overlaps a patch of the survey's sky map (the
   tracts registered for it). Without a sky map every detector does;
2. **what each detector's quantum reads** -- the master ``bias`` and ``flat``
   certified in the instrument's CALIBRATION collection and valid at the
   exposure's expected start, the ``template_coadd`` patches of the visit's
   band that overlap the footprint, and (when configured) the shards of a
   sharded reference catalog that cover it;
3. **the deterministic ids** -- the quantum id (:func:`ap_quantum_id`) and the
   ids of the outputs the runner will write (:func:`ap_output_ids`), so a
   redelivered ``nextVisit`` plans the very same quanta.

A missing calibration or template is not a planning error: the quantum is
planned with what was found, and its data ID carries the missing dataset types
under :data:`MISSING_INPUTS_KEY` (comma-separated) so the runner can fail it
naming them. An unknown instrument, detector or filter raises the
:mod:`nightshift.obs` error (nothing is planned for that visit).

Every registry question is asked once per visit (not per detector): one query
per calibration type, one for the templates, one for the reference shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..butler import DatasetRef, deterministic_dataset_id
from ..events import NextVisit, QuantumPlanned
from ..obs import UnknownDetectorError, get_instrument
from ..sky import Circle, ConvexPolygon, HealpixSkyMap, pixel_ranges
from ._exceptions import PlanningError

if TYPE_CHECKING:
    from ..butler import Registry

__all__ = [
    "AP_OUTPUT_DATASET_TYPES",
    "AP_TASK_LABEL",
    "MISSING_INPUTS_KEY",
    "DetectorPlan",
    "PlannerConfig",
    "VisitPlan",
    "VisitPlanner",
    "ap_output_ids",
    "ap_quantum_id",
    "ap_run",
]

log = logging.getLogger(__name__)

#: Task label of the prompt-processing quantum (one per visit and detector).
AP_TASK_LABEL = "ap"
#: Dataset types the runner writes per (instrument, visit, detector) into the quantum's run; their ids are
#: :func:`ap_output_ids` (the butler's deterministic ids of type, data ID and run).
AP_OUTPUT_DATASET_TYPES: tuple[str, ...] = ("calexp", "difference", "dia_source", "dia_object", "dia_forced_source")
#: Data-ID key of a planned quantum listing, comma-separated, the input dataset types the planner did not find
#: (absent when nothing is missing). It is not a dimension: drop it before using the data ID with a butler.
MISSING_INPUTS_KEY = "missing_inputs"

#: uuid5 namespace of prompt-processing quantum ids (fixed forever: ids must be reproducible).
_QUANTUM_NAMESPACE = uuid.UUID("6a0f3c51-8d2e-5b7a-9c41-2e7d5f1b0a93")
_MJD_UNIX0 = 40587.0
_TAI_UTC = 37.0  # seconds TAI - UTC since 2017
#: Candidate patches are searched around a footprint grown by this much (degrees), since a patch's polygon
#: (great-circle edges between its HEALPix corners) may bulge slightly beyond its HEALPix cell; the exact
#: overlap test against the polygon then decides.
_PATCH_SEARCH_MARGIN = 1.0 / 60.0
_SKYPIX = re.compile(r"healpix(\d+)")


def ap_quantum_id(instrument: str, visit: int, detector: int) -> uuid.UUID:
    """The id of the prompt-processing quantum of one (instrument, visit, detector): a uuid5, stable forever."""
    return uuid.uuid5(_QUANTUM_NAMESPACE, f"{instrument};{int(visit)};{int(detector)};{AP_TASK_LABEL}")


def ap_run(instrument: str, day_obs: int, template: str = "{instrument}/prompt/{day_obs}") -> str:
    """The output RUN collection of a night's prompt processing (``LSSTCam-sim/prompt/20261206``)."""
    return template.format(instrument=instrument, day_obs=day_obs)


def ap_output_ids(instrument: str, visit: int, detector: int, run: str) -> dict[str, uuid.UUID]:
    """Ids of the datasets the runner writes for one quantum (:data:`AP_OUTPUT_DATASET_TYPES`), by dataset type.

    They are :func:`nightshift.butler.deterministic_dataset_id` of (type, data ID
    ``{instrument, visit, detector}``, run): the runner's ``dataset.write`` of
    the same dataset gets the same id.
    """
    data_id: dict[str, int | str] = {"instrument": instrument, "visit": int(visit), "detector": int(detector)}
    return {name: deterministic_dataset_id(name, data_id, run) for name in AP_OUTPUT_DATASET_TYPES}


@dataclass(frozen=True)
class PlannerConfig:
    """What the planner resolves, and where.

    Parameters
    ----------
    skymap : str, optional
        Name of the registered (HEALPix) sky map of the templates; its
        registered tracts are the survey field. ``None``: no templates are
        looked for and every detector sees the field.
    template_dataset_type : str
        Dataset type of the templates (dimensions skymap, tract, patch, band).
    template_collections : sequence of str
        Where templates are searched.
    calib_collection : str
        CALIBRATION collection of the master calibrations (``{instrument}`` is replaced).
    calib_dataset_types : sequence of str
        Certified calibrations each quantum needs: ``bias`` (instrument,
        detector) and ``flat`` (instrument, detector, physical_filter).
    raw_collection : str
        Where the runner finds the raw (``{instrument}`` is replaced); listed in the quantum's collections.
    run_template : str
        The output RUN (``{instrument}``, ``{day_obs}`` replaced).
    refcat : str, optional
        A sharded reference catalog (one ``healpix<order>`` dimension,
        :func:`nightshift.butler.ingest_reference_catalog`) whose covering
        shards become inputs; ``None``: no reference catalog is resolved.
    refcat_collections : sequence of str
        Where its shards are searched.
    lead_time_s : float
        Seconds between a ``nextVisit``'s ``issued_at`` and the exposure's
        start (``nextVisit`` has no start time; the simulator issues it 20 s ahead).
    """

    skymap: str | None = None
    template_dataset_type: str = "template_coadd"
    template_collections: tuple[str, ...] = ("templates/sim",)
    calib_collection: str = "{instrument}/calib"
    calib_dataset_types: tuple[str, ...] = ("bias", "flat")
    raw_collection: str = "{instrument}/raw/all"
    run_template: str = "{instrument}/prompt/{day_obs}"
    refcat: str | None = None
    refcat_collections: tuple[str, ...] = ("refcats",)
    lead_time_s: float = 20.0

    def __post_init__(self) -> None:
        unknown = set(self.calib_dataset_types) - {"bias", "flat"}
        if unknown:
            raise PlanningError(f"calib_dataset_types may hold 'bias' and 'flat', not {sorted(unknown)}")
        for name in ("template_collections", "calib_dataset_types", "refcat_collections"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def config_hash(self) -> str:
        """sha256 (hex) of what decides a quantum's inputs and outputs (the ``config_hash`` of its events)."""
        doc = {"task": AP_TASK_LABEL, "outputs": AP_OUTPUT_DATASET_TYPES, "skymap": self.skymap,
               "templates": [self.template_dataset_type, *self.template_collections],
               "calibs": [self.calib_collection, *self.calib_dataset_types], "run": self.run_template,
               "refcat": [self.refcat, *self.refcat_collections]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DetectorPlan:
    """One detector's quantum: where it looks on the sky and what it reads.

    Attributes
    ----------
    detector : int
    footprint : nightshift.sky.ConvexPolygon
        The detector's pixel area on the sky (vertices in position-angle
        order: north through east, counter-clockwise seen from inside the sphere).
    inputs : mapping of str to tuple of DatasetRef
        Resolved inputs by dataset type (``bias``, ``flat``, the template type, the refcat).
    missing : tuple of str
        Dataset types that were looked for and not found.
    patches : tuple of (int, int)
        The sky map's (tract, patch) pairs overlapping the footprint (with or without a template).
    """

    detector: int
    footprint: ConvexPolygon
    inputs: Mapping[str, tuple[DatasetRef, ...]]
    missing: tuple[str, ...]
    patches: tuple[tuple[int, int], ...] = ()

    @property
    def input_ids(self) -> list[uuid.UUID]:
        """Every input's dataset id, in dataset-type then data-ID order (deterministic)."""
        return [ref.id for refs in self.inputs.values() for ref in refs]


@dataclass(frozen=True)
class VisitPlan:
    """The plan of one ``nextVisit``: a :class:`DetectorPlan` per detector that sees the field.

    Attributes
    ----------
    next_visit : NextVisit
    band : str
    run : str
        The output RUN collection.
    collections : tuple of str
        The input collections (calibrations, templates, raws, reference catalog).
    visit_start_mjd_tai : float
        Expected start of the exposure.
    detectors : tuple of DetectorPlan
        Sorted by detector.
    outside : tuple of int
        Requested detectors whose footprint overlaps no patch of the sky map (not planned).
    """

    next_visit: NextVisit
    band: str
    run: str
    collections: tuple[str, ...]
    visit_start_mjd_tai: float
    detectors: tuple[DetectorPlan, ...]
    outside: tuple[int, ...] = ()
    butler_repo: str | None = None
    config_hash: str = field(default="0" * 64, repr=False)

    def events(self) -> list[QuantumPlanned]:
        """One ``quantum.planned`` (v3) per detector plan; ids are deterministic (a replan gives the same)."""
        from .. import __version__

        nv = self.next_visit
        out = []
        for plan in self.detectors:
            qid = ap_quantum_id(nv.instrument, nv.visit, plan.detector)
            data_id = {"instrument": nv.instrument, "visit": str(nv.visit), "detector": str(plan.detector),
                       "physical_filter": nv.physical_filter, "band": self.band, "day_obs": str(nv.day_obs)}
            if plan.missing:
                data_id[MISSING_INPUTS_KEY] = ",".join(plan.missing)
            out.append(QuantumPlanned(
                event_id=str(uuid.uuid5(qid, nv.event_id)),
                quantum_id=qid, task_label=AP_TASK_LABEL, instrument=nv.instrument, visit=nv.visit,
                detector=plan.detector, data_id=data_id, inputs=plan.input_ids,
                outputs=list(ap_output_ids(nv.instrument, nv.visit, plan.detector, self.run).values()),
                config_hash=self.config_hash, code_version=__version__, butler_repo=self.butler_repo,
                run=self.run, collections=list(self.collections),
                footprint_deg=[x for vertex in plan.footprint.vertices for x in vertex],
                visit_start_mjd_tai=self.visit_start_mjd_tai,
            ))
        return out


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


_CELL_POLYGONS: dict[tuple[int, int], ConvexPolygon | None] = {}
_CELL_POLYGONS_KEPT = 200_000


def _cell_polygon(order: int, cell: int, lon: Sequence[float], lat: Sequence[float]) -> ConvexPolygon | None:
    """The 4-vertex polygon the registry stores as a HEALPix cell's region (None if it is degenerate); cached."""
    key = (order, cell)
    if key not in _CELL_POLYGONS:
        if len(_CELL_POLYGONS) >= _CELL_POLYGONS_KEPT:
            _CELL_POLYGONS.clear()
        try:
            _CELL_POLYGONS[key] = ConvexPolygon(tuple((float(a), float(b)) for a, b in zip(lon, lat, strict=True)))
        except ValueError:
            _CELL_POLYGONS[key] = None  # corners that make no convex polygon: counted as overlapping
    return _CELL_POLYGONS[key]


@dataclass(frozen=True)
class _Footprints:
    """The requested detectors' footprints, with bounding circles (unit-vector centres, radii in radians)."""

    polygons: dict[int, ConvexPolygon]
    centres: np.ndarray
    radii: np.ndarray
    field: Circle

    @classmethod
    def build(cls, corners: Mapping[int, Sequence[tuple[float, float]]], ra: float, dec: float) -> _Footprints:
        pts = np.array(list(corners.values()), dtype=float).reshape(len(corners), 4, 2)
        v = _unit(pts[..., 0], pts[..., 1])  # (n, 4, 3)
        centres = v.sum(axis=1)
        # position-angle order (north through east): the first turn is clockwise seen from outside
        turn = np.einsum("nc,nc->n", np.cross(v[:, 0], v[:, 1]), centres)
        polygons = {d: ConvexPolygon(tuple(map(tuple, pts[i] if turn[i] < 0 else pts[i, ::-1])))
                    for i, d in enumerate(corners)}
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        radii = np.arccos(np.clip(np.einsum("nkc,nc->nk", v, centres), -1.0, 1.0)).max(axis=1)
        axis = _unit(np.array([ra]), np.array([dec]))[0]
        reach = float(np.degrees(np.arccos(np.clip(v.reshape(-1, 3) @ axis, -1.0, 1.0)).max()))
        return cls(polygons, centres, radii, Circle(ra % 360.0, dec, min(reach + 1e-6, 179.0)))

    def cells(self, order: int, keep: Callable[[int], bool] | None = None) -> dict[int, list[int]]:
        """Each detector's HEALPix cells at ``order`` whose (registry) polygons overlap its footprint.

        Candidates come from one cover of the whole field (grown by a margin:
        a cell's polygon may bulge a little beyond the cell), are paired with
        detectors by bounding circles, and each pair is decided exactly.
        """
        from cdshealpix.nested import vertices

        cand = np.array([p for lo, hi in pixel_ranges(self.field, order, margin_deg=_PATCH_SEARCH_MARGIN).tolist()
                         for p in range(lo, hi) if keep is None or keep(p)], dtype=np.uint64)
        out: dict[int, list[int]] = {d: [] for d in self.polygons}
        if cand.size == 0:
            return out
        lon, lat = vertices(cand, order)
        lon_deg, lat_deg = np.asarray(lon.deg, dtype=float), np.asarray(lat.deg, dtype=float)
        cv = _unit(lon_deg, lat_deg)  # (m, 4, 3)
        cc = cv.sum(axis=1)
        cc /= np.linalg.norm(cc, axis=1, keepdims=True)
        cr = np.arccos(np.clip(np.einsum("mkc,mc->mk", cv, cc), -1.0, 1.0)).max(axis=1)
        sep = np.arccos(np.clip(self.centres @ cc.T, -1.0, 1.0))  # (n, m)
        near = sep <= self.radii[:, None] + cr[None, :] + math.radians(_PATCH_SEARCH_MARGIN)
        for i, det in enumerate(self.polygons):
            fp = self.polygons[det]
            for j in np.flatnonzero(near[i]).tolist():
                cell = int(cand[j])
                poly = _cell_polygon(order, cell, lon_deg[j], lat_deg[j])
                if poly is None or poly.overlaps(fp):
                    out[det].append(cell)
        return out


class VisitPlanner:
    """Plans ``nextVisit`` events against one butler registry (thread-safe; one registry query at a time).

    Parameters
    ----------
    registry : nightshift.butler.Registry
        The repository's registry (the runner reads the same repository).
    config : PlannerConfig, optional
    butler_repo : str, optional
        The repository path or URI written into each quantum (``butler_repo``).
    """

    def __init__(self, registry: Registry, config: PlannerConfig | None = None,
                 butler_repo: str | None = None) -> None:
        self.registry = registry
        self.config = config or PlannerConfig()
        self.butler_repo = butler_repo
        self._lock = threading.Lock()
        self._skymap: HealpixSkyMap | None = None
        self._tracts: frozenset[int] | None = None
        self._config_hash = self.config.config_hash

    # -- set-up -------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Load the sky map (and reference catalog type) now: a service fails at start, not on each visit.

        Raises
        ------
        PlanningError
            The configured sky map or reference catalog is not in the registry.
        """
        with self._lock:
            self._load_skymap()
            self._refcat_order()

    def _load_skymap(self) -> HealpixSkyMap | None:
        name = self.config.skymap
        if name is None or self._skymap is not None:
            return self._skymap
        record = self.registry.get_dimension_record("skymap", {"skymap": name})
        if record is None:
            raise PlanningError(f"sky map {name!r} is not registered in the repository: register it "
                                "(Registry.register_skymap) or set the planner's skymap to one that is")
        if record.kind != "healpix":
            raise PlanningError(f"sky map {name!r} is of kind {record.kind!r}; the planner handles 'healpix'")
        tract_order = (int(record.tract_max) // 12).bit_length() // 2
        patch_levels = (int(record.patch_max)).bit_length() // 2
        tracts = sorted(int(r.id) for r in self.registry.query_dimension_records("tract", data_id={"skymap": name}))
        sky = HealpixSkyMap(name, tract_order, patch_levels,
                            None if len(tracts) == int(record.tract_max) else tuple(tracts))
        if sky.hash != record.hash:
            raise PlanningError(f"sky map {name!r}: cannot rebuild its geometry (hash {sky.hash} != {record.hash})")
        self._skymap, self._tracts = sky, frozenset(tracts)
        return sky

    def _refcat_order(self) -> tuple[str, int] | None:
        name = self.config.refcat
        if name is None:
            return None
        from ..butler.registry import MissingDatasetTypeError

        try:
            dt = self.registry.get_dataset_type(name)
        except MissingDatasetTypeError as exc:
            raise PlanningError(f"reference catalog {name!r} is not a dataset type of the repository: {exc}") from exc
        dims = [d for d in dt.dimensions if _SKYPIX.fullmatch(d)]
        if len(dims) != 1:
            raise PlanningError(f"reference catalog {name!r} has dimensions {list(dt.dimensions)}, not one "
                                "healpix<order> sky-pixel dimension")
        match = _SKYPIX.fullmatch(dims[0])
        return dims[0], int(match.group(1)) if match else 0

    # -- planning -----------------------------------------------------------------------------------------
    def plan(self, next_visit: NextVisit) -> VisitPlan:
        """Plan one visit.

        Raises
        ------
        nightshift.obs.UnknownInstrumentError, UnknownDetectorError, UnknownFilterError
            The event names an instrument, detector or filter that does not exist.
        PlanningError
            The configured sky map or reference catalog is not in the repository.
        """
        nv = next_visit
        instrument = get_instrument(nv.instrument)
        band = instrument.physical_filter(nv.physical_filter).band
        camera = instrument.camera
        wanted = sorted(set(nv.detectors)) if nv.detectors else [d.id for d in camera if d.purpose == "SCIENCE"]
        unknown = [d for d in wanted if d not in camera.detectors]
        if unknown:
            ids = sorted(camera.detectors)
            raise UnknownDetectorError(
                f"nextVisit {nv.instrument}/{nv.visit} names detector(s) {unknown} that camera {camera.name} does "
                f"not have (its detectors are {ids[0]}..{ids[-1]}, {len(ids)} in all)")
        corners = camera.sky_corners(nv.ra_deg, nv.dec_deg, nv.rotation_deg, wanted)
        footprints = _Footprints.build(corners, nv.ra_deg, nv.dec_deg)
        start_ns = int(round((nv.issued_at.timestamp() + _TAI_UTC + self.config.lead_time_s) * 1e9))
        start_mjd = start_ns / 86_400e9 + _MJD_UNIX0
        cfg = self.config
        calib_collection = cfg.calib_collection.format(instrument=nv.instrument)
        raw_collection = cfg.raw_collection.format(instrument=nv.instrument)
        with self._lock:
            sky = self._load_skymap()
            patches = self._overlapping_patches(sky, footprints) if sky is not None else None
            inside = [d for d in wanted if patches is None or patches[d]]
            outside = tuple(d for d in wanted if d not in inside)
            inputs: dict[int, dict[str, tuple[DatasetRef, ...]]] = {d: {} for d in inside}
            missing: dict[int, list[str]] = {d: [] for d in inside}
            if inside:
                self._resolve_calibs(nv, calib_collection, inside, start_ns, inputs, missing)
                if sky is not None and patches is not None:
                    self._resolve_templates(sky, band, inside, patches, inputs, missing)
                self._resolve_refcat(footprints, inside, inputs, missing)
        collections = tuple(dict.fromkeys([
            calib_collection, *(cfg.template_collections if sky is not None else ()), raw_collection,
            *(cfg.refcat_collections if cfg.refcat is not None else ())]))
        plans = tuple(DetectorPlan(d, footprints.polygons[d], inputs[d], tuple(missing[d]),
                                   tuple(patches[d]) if patches is not None else ()) for d in inside)
        lacking: dict[str, list[int]] = {}
        for p in plans:
            for name in p.missing:
                lacking.setdefault(name, []).append(p.detector)
        for name, dets in lacking.items():
            log.warning("visit %d: no %s for %d detector(s) %s; planned anyway (the runner fails them)", nv.visit,
                        name, len(dets), dets, extra={"visit": nv.visit, "missing_inputs": name})
        if outside:
            log.info("visit %d: %d detector(s) outside the sky map %s: %s", nv.visit, len(outside), cfg.skymap,
                     list(outside), extra={"visit": nv.visit})
        return VisitPlan(nv, band, ap_run(nv.instrument, nv.day_obs, cfg.run_template), collections, start_mjd,
                         plans, outside, self.butler_repo, self._config_hash)

    def _overlapping_patches(self, sky: HealpixSkyMap, footprints: _Footprints) -> dict[int, list[tuple[int, int]]]:
        """Each detector's (tract, patch) pairs of the sky map whose polygons overlap its footprint."""
        shift = 2 * sky.patch_levels
        tracts = self._tracts
        cells = footprints.cells(sky.tract_order + sky.patch_levels,
                                 None if tracts is None else (lambda c: c >> shift in tracts))
        return {d: [(c >> shift, c - ((c >> shift) << shift)) for c in cs] for d, cs in cells.items()}

    def _query(self, dataset_type: str, collections: Sequence[str], where: str, bind: Mapping[str, Any],
               time: Any = None) -> list[DatasetRef] | None:
        """``query_datasets``, or None (with a warning) when the dataset type or a collection does not exist."""
        from ..butler.registry import MissingCollectionError, MissingDatasetTypeError

        try:
            return self.registry.query_datasets(dataset_type, list(collections), where=where, bind=bind, time=time)
        except (MissingDatasetTypeError, MissingCollectionError) as exc:
            log.warning("no %s can be found in %s: %s", dataset_type, list(collections), exc)
            return None

    def _resolve_calibs(self, nv: NextVisit, collection: str, detectors: list[int], when_tai_ns: int,
                        inputs: dict[int, dict[str, tuple[DatasetRef, ...]]], missing: dict[int, list[str]]) -> None:
        when = when_tai_ns  # the registry's time: TAI ns since 1970-01-01T00:00:00 TAI (MJD 40587 TAI)
        for name in self.config.calib_dataset_types:
            where = "instrument = inst AND detector IN (dets)"
            bind: dict[str, Any] = {"inst": nv.instrument, "dets": detectors}
            if name == "flat":
                where += " AND physical_filter = pf"
                bind["pf"] = nv.physical_filter
            refs = self._query(name, [collection], where, bind, time=when) or []
            by_det = {int(r.data_id["detector"]): r for r in refs}
            for d in detectors:
                if d in by_det:
                    inputs[d][name] = (by_det[d],)
                else:
                    missing[d].append(name)

    def _resolve_templates(self, sky: HealpixSkyMap, band: str, detectors: list[int],
                           patches: Mapping[int, list[tuple[int, int]]],
                           inputs: dict[int, dict[str, tuple[DatasetRef, ...]]], missing: dict[int, list[str]]) -> None:
        name = self.config.template_dataset_type
        tracts = sorted({t for d in detectors for t, _ in patches[d]})
        where = "skymap = sm AND band = b AND tract IN (tracts)"
        bind = {"sm": sky.name, "b": band, "tracts": tracts}
        refs = (self._query(name, self.config.template_collections, where, bind) or []) if tracts else []
        by_patch = {(int(r.data_id["tract"]), int(r.data_id["patch"])): r for r in refs}
        for d in detectors:
            found = tuple(by_patch[tp] for tp in sorted(patches[d]) if tp in by_patch)
            if found:
                inputs[d][name] = found
            else:
                missing[d].append(name)

    def _resolve_refcat(self, footprints: _Footprints, detectors: list[int],
                        inputs: dict[int, dict[str, tuple[DatasetRef, ...]]], missing: dict[int, list[str]]) -> None:
        name = self.config.refcat
        found = self._refcat_order()
        if name is None or found is None:
            return
        dim, order = found
        cover = footprints.cells(order)
        pixels = sorted({p for d in detectors for p in cover[d]})
        bind = {"pixels": pixels}
        refs = (self._query(name, self.config.refcat_collections, f"{dim} IN (pixels)", bind) or []) if pixels else []
        by_pixel = {int(r.data_id[dim]): r for r in refs}
        for d in detectors:
            shards = tuple(by_pixel[p] for p in sorted(cover[d]) if p in by_pixel)
            if shards:
                inputs[d][name] = shards
            else:
                missing[d].append(name)
