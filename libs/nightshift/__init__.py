"""nightshift: data middleware for a survey telescope.

Subpackages
-----------
Lowest layer first; imports only run downward (see ``docs/architecture.md``).

sky
    Sky regions (circle, convex polygon, box, union) with exact containment and
    overlap, HEALPix pixel ranges at any depth, sky maps of tracts and patches.
events
    Avro event models and schemas, the Confluent wire format, the asyncio Kafka
    producer and consumer with dead-letter topics, typed Kafka settings.
service
    The base every Alert Production service stands on: settings, JSON logs,
    Prometheus metrics, health endpoints, graceful shutdown.
butler
    Data access: dataset types, dimensions, collections, the registry, datastores
    (POSIX, S3, in-memory, chained) and formatters.
pipe
    Pipeline tasks, pipelines, pre-flight quantum graphs and executors (in-process,
    multi-process, Dask, the Kafka runner fleet).
apdb
    The Alert Production Database (DIA objects, sources, forced sources) on
    PostgreSQL through asyncpg, and its synthetic-visit simulators.
efd
    The Engineering and Facility Database: base telemetry topics and per-visit
    summaries on PostgreSQL.
obs
    Instruments (cameras, detectors, amplifiers, filters), header translation
    through astro-metadata-translator, headers-only raw ingest, and the camera
    simulator (``obs.sim``) that renders raws with known truth.
ap
    Alert Production science: ISR, characterization, template warping and
    PSF-matched subtraction, DIA detection and measurement, association, forced
    photometry and alert cutouts.
alerts
    Rubin-format alert packets from APDB tables: the column-wise Avro encoder,
    FITS cutouts, the publisher, the archive and the consumer tools.
cli
    The ``nightshift`` command: thin click commands over the packages above.

Development tooling of the source checkout (the local stack, the demo, the local
runner fleet) is the separate package ``nightshift_dev``, not part of the library.
"""

from ._exceptions import NightshiftError

__all__ = ["NightshiftError", "__version__"]
__version__ = "0.1.0"
