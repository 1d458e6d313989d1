"""The L1 database (APDB): DIA objects, sources and forced sources on PostgreSQL via asyncpg.

Tables and column names are those of the Rubin APDB schema shipped in
``lsst-sdm-schemas`` (``apdb.yaml``); the physical layout (time partitions,
HEALPix spatial index, history chunks) is described in ``docs/apdb.md``.

Use :class:`AsyncApdb` in services (one per process) and :class:`Apdb` in
batch jobs and notebooks. :class:`SkyField` and :func:`simulate_visit` make
synthetic visits with every column filled (tests, benchmark, demo).
Regions (:class:`Circle`, :class:`ConvexPolygon`) are those of
:mod:`nightshift.sky`, re-exported here.
"""

from ..sky import Circle, ConvexPolygon, Region  # re-exported: the regions APDB reads take
from ._admin import info, prune, stats
from ._apdb import AsyncApdb, Preload, StoreResult, to_mjd_tai
from ._exceptions import (
    ApdbConnectionError,
    ApdbError,
    ApdbSchemaError,
    ApdbTransientError,
    ApdbValidationError,
)
from ._ids import make_source_ids, split_source_ids
from ._schema import apdb_tables, schema_version
from ._settings import ApdbSettings
from ._simulate import SimulatedVisit, SkyField, random_positions, simulate_visit
from ._sync import Apdb

__all__ = [
    "Apdb",
    "ApdbConnectionError",
    "ApdbError",
    "ApdbSchemaError",
    "ApdbSettings",
    "ApdbTransientError",
    "ApdbValidationError",
    "AsyncApdb",
    "Circle",
    "ConvexPolygon",
    "Preload",
    "Region",
    "SimulatedVisit",
    "SkyField",
    "StoreResult",
    "apdb_tables",
    "info",
    "make_source_ids",
    "prune",
    "random_positions",
    "schema_version",
    "simulate_visit",
    "split_source_ids",
    "stats",
    "to_mjd_tai",
]
