"""Rubin-format alert packets from APDB tables: schema, column-wise encoder, cutouts, wire format.

The schemas are the files of ``lsst-alert-packet`` (latest by default, any
shipped version selectable). :class:`AlertEncoder` turns a detector's new
DiaSources, DiaObjects and the field's preload into Avro alert bodies,
encoding each table row once, column by column; the bytes equal
``fastavro.schemaless_writer``'s on the same records. ``docs/alerts.md``
describes the topic, key, framing and registry ids for broker developers.

Example
-------
>>> from nightshift.alerts import AlertEncoder  # doctest: +SKIP
>>> batch = AlertEncoder().build(sources, objects, preload=preload, cutouts=cutouts)  # doctest: +SKIP
>>> batch.framed()  # Confluent-framed, schema id 1101  # doctest: +SKIP
"""

from ._archive import AlertArchive, ArchivedFile, container_file
from ._cutouts import CutoutWriter, LocalWcs, write_cutout
from ._encoder import EncodedRows, RecordEncoder, RowProblems, as_arrow
from ._errors import AlertError, AlertInputsError, AlertSchemaError, ArchiveError, CutoutError, PublishError
from ._inputs import AlertInputs, read_alert_inputs, s3_client, write_alert_inputs
from ._packet import HISTORY_DAYS, AlertBatch, AlertEncoder, BadAlert, Cutouts, EncodedCache, frame, unframe
from ._published import PublishedLedger, PublishedRecord, Verdict, dia_sources_digest, published_key
from ._publisher import DLQ_TOPIC, PRODUCER_DEFAULTS, AlertPublisher, PublishReport, VisitDetectorCount, alert_topic
from ._schema import AlertSchema, latest_version, shipped_versions
from ._stream import AlertStream, simulated_cutouts
from ._tools import alert_json, cutouts_png, decode_alert, read_alert_file, summary_line, write_alert_files

__all__ = [
    "DLQ_TOPIC",
    "PRODUCER_DEFAULTS",
    "HISTORY_DAYS",
    "AlertArchive",
    "AlertBatch",
    "AlertEncoder",
    "AlertError",
    "AlertInputs",
    "AlertInputsError",
    "AlertPublisher",
    "AlertSchema",
    "AlertSchemaError",
    "AlertStream",
    "ArchiveError",
    "ArchivedFile",
    "BadAlert",
    "CutoutError",
    "CutoutWriter",
    "Cutouts",
    "EncodedCache",
    "EncodedRows",
    "LocalWcs",
    "PublishError",
    "PublishReport",
    "PublishedLedger",
    "PublishedRecord",
    "RecordEncoder",
    "RowProblems",
    "Verdict",
    "VisitDetectorCount",
    "alert_json",
    "alert_topic",
    "as_arrow",
    "container_file",
    "cutouts_png",
    "decode_alert",
    "dia_sources_digest",
    "frame",
    "latest_version",
    "published_key",
    "read_alert_inputs",
    "s3_client",
    "read_alert_file",
    "shipped_versions",
    "simulated_cutouts",
    "summary_line",
    "unframe",
    "write_alert_files",
    "write_alert_inputs",
    "write_cutout",
]
