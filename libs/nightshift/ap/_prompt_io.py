"""The prompt-processing quantum's I/O: its inputs from the butler, its outputs to a staging area.

Everything here blocks (registry queries, file and object-store reads and
writes); the handler in ``_prompt`` runs it on worker threads.

- :func:`find_raw` looks a raw up in the registry (the durable half of the
  plan/raw join: a raw whose ``raw.ingested`` event this runner never saw is
  still found);
- :func:`load_inputs` resolves the quantum's ``inputs`` (dataset ids) to the
  master bias and flat, the template and the reference catalog, and fails
  with :class:`MissingInputError` naming what is missing;
- :class:`ObjectStore` puts and gets bytes at ``s3://bucket/prefix`` or in a
  POSIX directory (staging area, alert-inputs bundles, replay manifests);
- :func:`encode_dataset` serialises an output with the default formatter of its
  storage class, so the datastore-writer ingests the staged file as is;
- :func:`cutouts_fits` turns the AP cutouts into the alert packet's FITS stamps.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
from astropy.table import Table, vstack
from astropy.wcs import WCS

from ..alerts import Cutouts, CutoutWriter, LocalWcs
from ..butler import DatasetRef, DatasetType
from ..butler.formatters import Box, Exposure, FormatterFactory
from ..events import QuantumPlanned
from ._cutouts import AlertCutouts, Cutout
from ._exceptions import ApInputError, MissingInputError
from ._planning import MISSING_INPUTS_KEY
from ._psf import PsfModel

__all__ = [
    "ObjectStore",
    "QuantumInputs",
    "cutouts_fits",
    "encode_dataset",
    "find_raw",
    "load_inputs",
    "open_butler",
    "resolve_inputs",
]

_AB_NJY_ZP = 31.4  # AB magnitude of 1 nJy
_TEMPLATE_MARGIN = 64  # template pixels read around the detector's footprint (warping kernel, dithers)
_local = threading.local()


def open_butler(repo: str) -> Any:
    """A :class:`~nightshift.butler.Butler` on ``repo``, one per thread (registry connections are per thread)."""
    from ..butler import Butler

    cache: dict[str, Any] = _local.__dict__.setdefault("butlers", {})
    butler = cache.get(repo)
    if butler is None:
        butler = cache[repo] = Butler(repo)
    return butler


def _raw_data_id(event: QuantumPlanned) -> dict[str, int | str]:
    assert event.instrument is not None and event.visit is not None and event.detector is not None  # checked
    return {"instrument": event.instrument, "exposure": event.visit, "detector": event.detector}


def find_raw(butler: Any, event: QuantumPlanned) -> DatasetRef | None:
    """The raw of a quantum's (instrument, visit, detector) in its input collections, or None."""
    from ..butler import DatasetNotFoundError
    from ..butler.registry import RegistryError

    try:
        ref: DatasetRef = butler.find("raw", _raw_data_id(event), collections=list(event.collections))
    except (DatasetNotFoundError, RegistryError, LookupError):
        return None
    return ref


@dataclass
class QuantumInputs:
    """What :func:`nightshift.ap.process_detector` needs, read from the butler."""

    raw: np.ndarray
    detector: Any
    pointing_wcs: WCS
    midpoint_mjd: float
    exposure_time_s: float
    rotpa: float
    band: str
    bias: np.ndarray | None
    flat: np.ndarray | None
    template: Exposure
    template_psf: PsfModel
    refcat: Table
    template_id: str


def _camera_detector(instrument: str, detector: int, raw_shape: tuple[int, ...]) -> Any:
    """The detector geometry of the instrument whose raws have ``raw_shape`` (simulated cameras come in sizes)."""
    from ..obs import get_instrument

    det: Any = get_instrument(instrument).camera[detector]
    if tuple(det.raw_shape) == tuple(raw_shape):
        return det
    try:  # a simulated camera rendered at another detector size: its height is the size
        det = get_instrument(instrument, detector_size=int(raw_shape[0])).camera[detector]
    except (TypeError, ValueError):
        det = None
    if det is None or tuple(det.raw_shape) != tuple(raw_shape):
        raise ApInputError(f"the raw of detector {detector} is {raw_shape[0]}x{raw_shape[1]} pixels, which no "
                           f"geometry of instrument {instrument} has")
    return det


def _midpoint(meta: Mapping[str, Any], event: QuantumPlanned) -> tuple[float, float]:
    """(MJD TAI of the exposure's middle, exposure seconds) from the raw's header, else the plan."""
    from astropy.time import Time

    exptime = float(meta.get("EXPTIME") or 0.0)
    if meta.get("DATE-BEG") and meta.get("DATE-END"):
        scale = str(meta.get("TIMESYS") or "tai").lower()
        t0 = Time(str(meta["DATE-BEG"]), scale=scale).tai.mjd
        t1 = Time(str(meta["DATE-END"]), scale=scale).tai.mjd
        return float((t0 + t1) / 2), exptime or float((t1 - t0) * 86400.0)
    if meta.get("MJD-BEG") is not None:
        return float(meta["MJD-BEG"]) + exptime / 2 / 86400.0, exptime
    if event.visit_start_mjd_tai is not None:
        return event.visit_start_mjd_tai + exptime / 2 / 86400.0, exptime
    raise ApInputError("the raw has no DATE-BEG/DATE-END or MJD-BEG and the plan no visit_start_mjd_tai: "
                       "the exposure's time is unknown")


def _is_template(ref: DatasetRef) -> bool:
    return "patch" in ref.dataset_type.dimensions or ref.dataset_type.name.endswith("template_coadd")


def _is_refcat(ref: DatasetRef) -> bool:
    return ref.dataset_type.storage_class == "ReferenceCatalogShard" or ref.dataset_type.name == "ap_refcat" or any(
        d.startswith("healpix") for d in ref.dataset_type.dimensions)


def _missing(what: str, event: QuantumPlanned, planned_missing: Sequence[str]) -> MissingInputError:
    where = f"visit {event.visit} detector {event.detector} ({event.instrument}, band {event.data_id.get('band')})"
    if what in planned_missing:
        return MissingInputError(f"missing {what} for {where}: the planner found none in the repository "
                                 f"(collections {list(event.collections)}); add it and re-plan the visit")
    return MissingInputError(f"missing {what} for {where}: the quantum's inputs hold no {what} dataset")


def _choose_template(butler: Any, refs: Sequence[DatasetRef], det_corners: np.ndarray) -> tuple[DatasetRef, Box]:
    """The template covering most of the detector, and the pixel box of it to read."""
    best: tuple[float, DatasetRef, Box] | None = None
    for ref in refs:
        wcs = butler.get(ref.make_component_ref("wcs"))
        x, y = wcs.all_world2pix(det_corners[:, 0], det_corners[:, 1], 0)
        if wcs.pixel_shape is not None:
            nx, ny = (int(n) for n in wcs.pixel_shape)
        else:  # a header without NAXISn: read the image plane's shape
            ny, nx = butler.get(ref.make_component_ref("image")).shape
        x0, x1 = max(0, math.floor(np.min(x)) - _TEMPLATE_MARGIN), min(nx, math.ceil(np.max(x)) + _TEMPLATE_MARGIN)
        y0, y1 = max(0, math.floor(np.min(y)) - _TEMPLATE_MARGIN), min(ny, math.ceil(np.max(y)) + _TEMPLATE_MARGIN)
        if x1 <= x0 or y1 <= y0:
            continue
        want = (np.ptp(x) + 2 * _TEMPLATE_MARGIN) * (np.ptp(y) + 2 * _TEMPLATE_MARGIN)
        cover = (x1 - x0) * (y1 - y0) / max(want, 1.0)
        if best is None or cover > best[0]:
            best = (cover, ref, Box(x0, y0, x1, y1))
    if best is None:
        raise MissingInputError(f"none of the quantum's {len(refs)} template(s) overlaps the detector")
    return best[1], best[2]


def _njy_per_count(meta: Mapping[str, Any]) -> float:
    if meta.get("NJYPERCT") is not None:
        return float(meta["NJYPERCT"])
    if meta.get("ZP30") is not None:  # the simulator's templates: AB magnitude of one count (e- per 30 s)
        return float(10 ** (-0.4 * (float(meta["ZP30"]) - _AB_NJY_ZP)))
    return 1.0


def _refcat(tables: Sequence[Table], band: str) -> Table:
    cat = vstack(list(tables), metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    for name in (f"{band}_mag", f"mag_{band}", f"{band}mag", "mag"):
        if name in cat.colnames:
            break
    else:
        raise ApInputError(f"the reference catalog has no magnitude column for band {band} (looked for "
                           f"'{band}_mag', 'mag_{band}', '{band}mag', 'mag'); its columns are {cat.colnames}")
    for col in ("ra", "dec"):
        if col not in cat.colnames:
            raise ApInputError(f"the reference catalog has no {col!r} column; its columns are {cat.colnames}")
    return Table({"ra": np.asarray(cat["ra"], float), "dec": np.asarray(cat["dec"], float),
                  "mag": np.asarray(cat[name], float)})


def resolve_inputs(butler: Any, event: QuantumPlanned,
                   required: Sequence[str] = ("bias", "flat", "template", "refcat")) -> dict[str, list[DatasetRef]]:
    """The quantum's inputs by kind (``bias``, ``flat``, ``template``, ``refcat``), every required kind present.

    Raises
    ------
    MissingInputError
        An input id is not in the registry, or a required kind of input is absent; the message names it.
    """
    refs = butler.registry.get_datasets(event.inputs)
    found = {r.id for r in refs}
    unknown = [str(i) for i in event.inputs if i not in found]
    if unknown:
        raise MissingInputError(f"input dataset(s) {', '.join(unknown)} of quantum {event.quantum_id} are not in "
                                f"the registry of {event.butler_repo}")
    planned_missing = [m for m in (event.data_id.get(MISSING_INPUTS_KEY) or "").split(",") if m]
    kinds: dict[str, list[DatasetRef]] = {"bias": [], "flat": [], "template": [], "refcat": []}
    for ref in refs:
        name = ref.dataset_type.name
        kind = name if name in ("bias", "flat") else "template" if _is_template(ref) else \
            "refcat" if _is_refcat(ref) else None
        if kind is not None:
            kinds[kind].append(ref)
    for kind in required:
        if not kinds[kind]:
            wanted = {"template": "template_coadd", "refcat": "reference catalog"}.get(kind, kind)
            listed = [m for m in planned_missing if m in (kind, wanted) or (kind == "template" and "template" in m)]
            raise _missing(listed[0] if listed else wanted, event, planned_missing)
    return kinds


def load_inputs(butler: Any, event: QuantumPlanned, raw_ref: DatasetRef,
                required: Sequence[str] = ("bias", "flat", "template", "refcat")) -> QuantumInputs:
    """Read the raw and the quantum's inputs.

    Raises
    ------
    MissingInputError
        See :func:`resolve_inputs`.
    ApInputError
        The raw does not fit the instrument's geometry, or a table lacks a column.
    """
    assert event.instrument is not None and event.detector is not None  # checked by the handler
    kinds = resolve_inputs(butler, event, required)
    raw = butler.get(raw_ref)
    if raw.wcs is None:
        raise ApInputError(f"the raw {raw_ref.id} has no WCS in its header: the pointing is unknown")
    detector = _camera_detector(event.instrument, event.detector, raw.image.shape)
    meta = raw.metadata
    midpoint, exptime = _midpoint(meta, event)
    band = event.data_id.get("band") or str(meta.get("BAND") or "")
    if not band:
        raise ApInputError("the quantum's data ID has no band")
    bias = butler.get(kinds["bias"][0]).image if kinds["bias"] else None
    flat = butler.get(kinds["flat"][0]).image if kinds["flat"] else None
    h, w = detector.height, detector.width
    corners = np.array(raw.wcs.all_pix2world([0, w - 1, w - 1, 0], [0, 0, h - 1, h - 1], 0)).T
    tref, box = _choose_template(butler, kinds["template"], corners)
    template = butler.get(tref, parameters={"bbox": box})
    if template.psf is None:
        raise ApInputError(f"template {tref.id} ({dict(tref.data_id)}) has no PSF kernel")
    template.metadata["NJYPERCT"] = _njy_per_count(template.metadata)
    refcat = _refcat([butler.get(r) for r in kinds["refcat"]], band)
    return QuantumInputs(
        raw=np.asarray(raw.image), detector=detector, pointing_wcs=raw.wcs, midpoint_mjd=midpoint,
        exposure_time_s=exptime, rotpa=float(meta.get("ROTPA") or 0.0), band=band, bias=bias, flat=flat,
        template=template, template_psf=PsfModel(np.asarray(template.psf)), refcat=refcat, template_id=str(tref.id),
    )


# -- outputs ----------------------------------------------------------------------------------------
_FORMATTERS = FormatterFactory()


def encode_dataset(obj: Any, dataset_type: DatasetType) -> tuple[bytes, str]:
    """(file bytes, extension) of ``obj`` written by the default formatter of the dataset type's storage class."""
    formatter = _FORMATTERS.create(_FORMATTERS.spec_for(dataset_type))
    with tempfile.TemporaryDirectory(prefix="nightshift-stage-") as tmp:
        path = Path(tmp) / f"out{formatter.extension}"
        formatter.write(obj, path)
        return path.read_bytes(), formatter.extension


class ObjectStore:
    """Bytes at ``s3://bucket/prefix/...`` (boto3, credentials from the environment) or under a directory.

    Parameters
    ----------
    root : str
        ``s3://bucket[/prefix]``, ``file:///dir`` or a directory path.
    endpoint_url : str, optional
        S3 endpoint (``$S3_ENDPOINT`` or AWS otherwise).
    """

    def __init__(self, root: str, endpoint_url: str | None = None) -> None:
        self.root = root.rstrip("/")
        parsed = urlparse(self.root)
        self.is_s3 = parsed.scheme == "s3"
        self._endpoint = endpoint_url
        self._s3: Any = None
        self._lock = threading.Lock()
        if self.is_s3:
            self.bucket, self.prefix = parsed.netloc, parsed.path.lstrip("/")
        else:
            self.directory = Path(parsed.path if parsed.scheme == "file" else self.root)

    def _client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                from ..alerts import s3_client

                self._s3 = s3_client(self._endpoint)
            return self._s3

    def uri(self, key: str) -> str:
        """The URI of ``key`` under the root."""
        if self.is_s3:
            return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{key}"
        return str(self.directory / key)

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` at ``key`` (replacing it atomically) and return its URI."""
        if self.is_s3:
            uri = self.uri(key)
            self._client().put_object(Bucket=self.bucket, Key=uri.split("/", 3)[3], Body=data)
            return uri
        path = self.directory / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return str(path)

    def get(self, key: str) -> bytes | None:
        """The bytes at ``key``, or None if there are none."""
        if self.is_s3:
            from botocore.exceptions import ClientError

            try:
                body = self._client().get_object(Bucket=self.bucket, Key=self.uri(key).split("/", 3)[3])["Body"]
                return bytes(body.read())
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
        path = self.directory / key
        return path.read_bytes() if path.exists() else None


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _local_wcs(stamp: Cutout, size: int) -> LocalWcs:
    wcs = stamp.wcs
    if wcs is None:
        raise ApInputError("a cutout has no WCS")
    centre = (size - 1) / 2.0  # 0-based pixel of the stamp's centre
    ra, dec = wcs.all_pix2world([centre], [centre], 0)
    cd = wcs.pixel_scale_matrix
    return LocalWcs(float(ra[0]), float(dec[0]), centre + 1.0, centre + 1.0,
                    ((float(cd[0, 0]), float(cd[0, 1])), (float(cd[1, 0]), float(cd[1, 1]))))


def cutouts_fits(cutouts: Sequence[AlertCutouts], rotpa: float = 0.0,
                 writer: CutoutWriter | None = None) -> dict[int, Cutouts]:
    """The alert packet's FITS cutouts (difference, science, template) of each DIA source, by ``diaSourceId``."""
    writer = writer or CutoutWriter()
    out: dict[int, Cutouts] = {}
    for c in cutouts:
        stamps = []
        for stamp in (c.difference, c.science, c.template):
            size = int(stamp.image.shape[0])
            psf = stamp.psf if stamp.psf is not None else np.ones((1, 1), np.float32)
            stamps.append(writer.write(np.nan_to_num(stamp.image), stamp.variance, stamp.mask, psf,
                                       _local_wcs(stamp, size), rotpa))
        out[int(c.dia_source_id)] = Cutouts(*stamps)
    return out


def table_ids(table: pa.Table, column: str) -> list[int]:
    """A table's id column as Python ints."""
    return [int(v) for v in table.column(column).to_numpy().tolist()] if table.num_rows else []
