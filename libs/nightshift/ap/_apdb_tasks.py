"""The APDB preload and store as declared pipeline steps (DMS-MWST-REQ-0028/0029/0030, DMS-MWBT-REQ-0069).

Direct database I/O is the seed's one exception to "I/O through the butler".
These two tasks keep it visible to pre-flight and to the provenance:

* :class:`PreloadDiaObjectsTask` (per instrument, visit) reads the DiaObjects
  of the visit's sky region, and their DiaSource history, from the APDB and
  writes them as the butler datasets ``preloaded_dia_objects`` and
  ``preloaded_dia_sources``. It has no image input, so it is planned from the
  visit record alone and can run before the raws exist; the association task
  reads its outputs ``deferred`` (it waits only when it gets there, REQ-0030).
* :class:`StoreApdbTask` (per instrument, visit, detector) reads
  ``dia_source``, ``dia_object`` and ``dia_forced_source`` and stores them in
  the APDB in one transaction, then writes ``apdb_store`` (the rows added,
  the schema, the visit time) so the store is a dataset with provenance like
  any other output. The ids are deterministic and the APDB store is
  idempotent, so re-running a quantum leaves one copy of every row.

The database is reached with :class:`nightshift.apdb.ApdbSettings` read from
the environment (``NIGHTSHIFT_APDB_DSN`` or ``PG_DSN``, never from the config:
configs are recorded in provenance); the config names only the schema.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..apdb import Apdb, ApdbSettings, StoreResult
from ..pipe import (
    Input,
    Output,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    QuantumContext,
    Struct,
)
from ..sky import ConvexPolygon, Region
from ._exceptions import ApInputError, MissingInputError

__all__ = [
    "PreloadDiaObjectsTask",
    "PreloadDiaObjectsTaskConfig",
    "StoreApdbTask",
    "StoreApdbTaskConfig",
]

VISIT = ("instrument", "visit")
DET = ("instrument", "visit", "detector")


class _ApdbConfig(PipelineTaskConfig):
    """Which APDB (the schema; the server comes from the environment)."""

    apdb_schema: str | None = None  # None: NIGHTSHIFT_APDB_SCHEMA_NAME or "apdb"


def _open(config: _ApdbConfig) -> Apdb:
    overrides: dict[str, Any] = {"pool_min_size": 0, "pool_max_size": 4}
    if config.apdb_schema is not None:
        overrides["schema_name"] = config.apdb_schema
    return Apdb(ApdbSettings(**overrides))  # the DSN comes from the environment


def _visit_record(context: QuantumContext) -> Any:
    if context.butler is None:
        return None
    return context.butler.registry.get_dimension_record(
        "visit", {"instrument": context.data_id["instrument"], "visit": context.data_id["visit"]})


def visit_region(vertices: list[tuple[float, float]], margin_arcsec: float = 0.0) -> Region:
    """The region a preload reads: the visit's polygon grown by ``margin_arcsec``.

    Parameters
    ----------
    vertices : list of (ra, dec)
        The visit record's region (degrees).
    margin_arcsec : float
        Extra margin (objects just off the footprint that a source may still match).

    Returns
    -------
    ConvexPolygon
    """
    return ConvexPolygon(tuple((float(r), float(d)) for r, d in vertices)).dilated(margin_arcsec / 3600.0)


# ------------------------------------------------------------------------------------------ preload
class PreloadDiaObjectsConnections(PipelineTaskConnections, dimensions=VISIT):
    objects = Output("preloaded_dia_objects", "ArrowTable", VISIT,
                     doc="The visit region's current DiaObjects, read from the APDB")
    sources = Output("preloaded_dia_sources", "ArrowTable", VISIT,
                     doc="Their DiaSources since the history window's start, read from the APDB")


class PreloadDiaObjectsTaskConfig(_ApdbConfig):
    """Config of :class:`PreloadDiaObjectsTask`."""

    margin_arcsec: float = 10.0
    history_days: float = 365.0


class PreloadDiaObjectsTask(PipelineTask):
    """Read the visit region's DiaObjects and their source history from the APDB (REQ-0030 preload).

    The region is the ``visit`` record's (the planned footprint, known before
    the exposure), grown by ``margin_arcsec``; the history window ends at the
    visit's start. A visit without a region fails with a clear error.
    """

    ConfigClass = PreloadDiaObjectsTaskConfig
    ConnectionsClass = PreloadDiaObjectsConnections
    config: PreloadDiaObjectsTaskConfig

    def run_quantum(self, context: QuantumContext) -> None:
        rec = _visit_record(context)
        if rec is None or rec.region is None:
            raise MissingInputError(
                f"visit {dict(context.data_id)} has no sky region in the registry: the APDB preload needs the "
                "visit's footprint (insert the visit record with its region)")
        span = getattr(rec, "timespan", None)
        start = float(span.begin.tai.mjd) if span is not None and span.begin is not None else None
        context.put_all(self.run(visit_region(list(rec.region), self.config.margin_arcsec), start))

    def run(self, region: Region, visit_start_mjd: float | None = None) -> Struct:
        since = (visit_start_mjd - self.config.history_days) if visit_start_mjd is not None else 0.0
        with _open(self.config) as apdb:
            pre = apdb.preload(region, since)
        self.log.info("APDB preload: %d objects, %d sources (%s)", pre.objects.num_rows, pre.sources.num_rows,
                      {k: round(v, 3) for k, v in pre.timings.items()})
        return Struct(objects=pre.objects, sources=pre.sources)


# -------------------------------------------------------------------------------------------- store
class StoreApdbConnections(PipelineTaskConnections, dimensions=DET):
    sources = Input("dia_source", "ArrowTable", DET)
    objects = Input("dia_object", "ArrowTable", DET)
    forced = Input("dia_forced_source", "ArrowTable", DET)
    receipt = Output("apdb_store", "StructuredDataDict", DET,
                     doc="What the APDB store of this (visit, detector) did: rows added per table, schema, time")


class StoreApdbTaskConfig(_ApdbConfig):
    """Config of :class:`StoreApdbTask`."""


class StoreApdbTask(PipelineTask):
    """Store a detector's DiaSources, DiaObject versions and DiaForcedSources in the APDB (one transaction).

    Idempotent: the rows' ids are deterministic and the APDB skips rows it
    already holds, so a re-run quantum stores nothing twice. A detector with
    no rows at all (an empty difference image) stores nothing and says so in
    its ``apdb_store`` receipt (``n_rows`` all zero): that is a result, not an error.
    """

    ConfigClass = StoreApdbTaskConfig
    ConnectionsClass = StoreApdbConnections
    config: StoreApdbTaskConfig

    def run(self, sources: pa.Table, objects: pa.Table, forced: pa.Table) -> Struct:
        times = [t["midpointMjdTai"] for t in (sources, forced) if t.num_rows]
        n_in = {"DiaSource": sources.num_rows, "DiaObject": objects.num_rows, "DiaForcedSource": forced.num_rows}
        if not times:
            if objects.num_rows:
                raise ApInputError("DiaObject rows without any DiaSource: nothing says when they were observed")
            self.log.info("APDB store: nothing to store (no DiaSource, no DiaForcedSource)")
            return Struct(receipt={"schema": self.config.apdb_schema, "visit_time_mjd_tai": None,
                                   "n_rows": n_in, "added": {k: 0 for k in n_in}, "seconds": 0.0})
        visit_time = float(np.min([np.min(t.to_numpy()) for t in times]))
        with _open(self.config) as apdb:
            res: StoreResult = apdb.store(visit_time, objects, sources, forced)
            schema = apdb.settings.schema_name
        added = {"DiaSource": res.dia_sources, "DiaObject": res.dia_objects, "DiaForcedSource": res.dia_forced_sources}
        self.log.info("APDB store into %s: added %s of %s in %.3f s", schema, added, n_in, res.seconds)
        return Struct(receipt={"schema": schema, "visit_time_mjd_tai": visit_time, "n_rows": n_in, "added": added,
                               "seconds": res.seconds})
