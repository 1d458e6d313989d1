"""Pydantic models of the Alert Production events, one per subject (= topic).

The ``.avsc`` files in ``schemas/`` are the only definition of the wire
format; these models mirror them (a test fails when the two drift apart) and
add the checks Avro cannot express: ranges, non-empty ids, consistent counts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NonEmpty = Annotated[str, Field(min_length=1)]
Visit = Annotated[int, Field(ge=0)]
Detector = Annotated[int, Field(ge=0, le=1000)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
#: sha256 of a task config, hex: full, or the 16-character prefix the pipeline framework records
ConfigHash = Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$")]


def new_event_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    SUBJECT: ClassVar[str]

    event_id: NonEmpty = Field(default_factory=new_event_id)

    @field_validator("*", mode="after")
    @classmethod
    def _aware_datetimes(cls, value: object) -> object:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (UTC)")
        return value


class NextVisit(Event):
    SUBJECT: ClassVar[str] = "nextVisit"
    instrument: NonEmpty
    group_id: NonEmpty
    visit: Visit
    day_obs: Annotated[int, Field(ge=19000101, le=99991231)]
    survey: str
    ra_deg: Annotated[float, Field(ge=0.0, lt=360.0)]
    dec_deg: Annotated[float, Field(ge=-90.0, le=90.0)]
    rotation_deg: Annotated[float, Field(ge=-360.0, le=360.0)]
    physical_filter: NonEmpty
    exposure_time_s: Annotated[float, Field(gt=0.0, le=3600.0)]
    n_snaps: Annotated[int, Field(ge=1, le=16)]
    detectors: list[Detector]
    issued_at: datetime = Field(default_factory=utcnow)


class RawArrived(Event):
    SUBJECT: ClassVar[str] = "raw.arrived"
    instrument: NonEmpty
    group_id: NonEmpty
    visit: Visit
    detector: Detector
    snap: Annotated[int, Field(ge=0)]
    uri: NonEmpty
    size_bytes: Annotated[int, Field(ge=0)]
    checksum: Sha256
    observed_at: datetime


class RawIngested(Event):
    SUBJECT: ClassVar[str] = "raw.ingested"
    instrument: NonEmpty
    visit: Visit
    detector: Detector
    dataset_id: uuid.UUID
    run: NonEmpty
    uri: NonEmpty
    ingested_at: datetime = Field(default_factory=utcnow)


class QuantumPlanned(Event):
    """A quantum for a runner (v2: any data ID, and where its graph is; v3: the detector's sky
    footprint and the exposure's expected start, for the DIA preload)."""

    SUBJECT: ClassVar[str] = "quantum.planned"
    quantum_id: uuid.UUID
    task_label: NonEmpty
    instrument: NonEmpty | None = None
    visit: Visit | None = None
    detector: Detector | None = None
    data_id: dict[str, str]
    inputs: list[uuid.UUID]
    outputs: list[uuid.UUID]
    config_hash: ConfigHash
    code_version: NonEmpty
    planned_at: datetime = Field(default_factory=utcnow)
    execution_id: NonEmpty | None = None
    graph_uri: NonEmpty | None = None
    quantum_index: Annotated[int, Field(ge=0)] | None = None
    butler_repo: NonEmpty | None = None
    run: NonEmpty | None = None
    collections: list[NonEmpty] = Field(default_factory=list)
    memoize: bool = True
    footprint_deg: list[float] | None = None
    visit_start_mjd_tai: float | None = None

    @model_validator(mode="after")
    def _graph_pointer_complete(self) -> QuantumPlanned:
        if (self.graph_uri is None) != (self.quantum_index is None):
            raise ValueError("graph_uri and quantum_index go together: give both or neither")
        if self.footprint_deg is not None and (len(self.footprint_deg) < 6 or len(self.footprint_deg) % 2):
            raise ValueError("footprint_deg is flattened (ra, dec) pairs of at least three vertices")
        if self.butler_repo is not None and self.run is None:
            raise ValueError("a quantum with a butler_repo needs the output run")
        return self


class QuantumCompleted(Event):
    SUBJECT: ClassVar[str] = "quantum.completed"
    quantum_id: uuid.UUID
    task_label: NonEmpty
    visit: Visit | None = None
    detector: Detector | None = None
    outputs: list[uuid.UUID]
    duration_s: Annotated[float, Field(ge=0.0)]
    host: NonEmpty
    completed_at: datetime = Field(default_factory=utcnow)
    execution_id: NonEmpty | None = None
    pid: Annotated[int, Field(ge=0)] | None = None
    memoized: bool = False
    n_actual_inputs: Annotated[int, Field(ge=0)] = 0


class QuantumFailed(Event):
    SUBJECT: ClassVar[str] = "quantum.failed"
    quantum_id: uuid.UUID
    task_label: NonEmpty
    visit: Visit | None = None
    detector: Detector | None = None
    error_type: NonEmpty
    message: str
    retriable: bool
    host: NonEmpty
    failed_at: datetime = Field(default_factory=utcnow)
    execution_id: NonEmpty | None = None
    pid: Annotated[int, Field(ge=0)] | None = None
    traceback: str | None = None


class DatasetWrite(Event):
    SUBJECT: ClassVar[str] = "dataset.write"
    dataset_id: uuid.UUID
    dataset_type: NonEmpty
    storage_class: NonEmpty
    run: NonEmpty
    data_id: dict[str, str]
    staging_uri: NonEmpty
    checksum: Sha256
    requested_at: datetime = Field(default_factory=utcnow)


class DatasetStored(Event):
    SUBJECT: ClassVar[str] = "dataset.stored"
    dataset_id: uuid.UUID
    dataset_type: NonEmpty
    run: NonEmpty
    uri: NonEmpty
    stored_at: datetime = Field(default_factory=utcnow)
    data_id: dict[str, str] = Field(default_factory=dict)
    storage_class: NonEmpty | None = None
    size_bytes: Annotated[int, Field(ge=0)] | None = None
    checksum: Sha256 | None = None


class DiaResults(Event):
    SUBJECT: ClassVar[str] = "dia.results"
    instrument: NonEmpty
    visit: Visit
    detector: Detector
    visit_time_mjd_tai: Annotated[float, Field(ge=40000.0, le=100000.0)]
    n_dia_sources: Annotated[int, Field(ge=0)]
    n_dia_objects: Annotated[int, Field(ge=0)]
    dia_source_ids: list[int]
    results_uri: NonEmpty
    produced_at: datetime = Field(default_factory=utcnow)
    #: v2: the Arrow IPC bundle of alert-ready tables (``nightshift.alerts.write_alert_inputs``).
    alert_inputs_uri: NonEmpty | None = None
    #: v2: seconds; the shutter closes at ``visit_time_mjd_tai + exposure_time_s / 2``.
    exposure_time_s: Annotated[float, Field(gt=0.0, le=3600.0)] | None = None

    @model_validator(mode="after")
    def _counts_match(self) -> DiaResults:
        if len(self.dia_source_ids) != self.n_dia_sources:
            raise ValueError(
                f"n_dia_sources={self.n_dia_sources} but {len(self.dia_source_ids)} dia_source_ids were given"
            )
        return self


EVENT_TYPES: dict[str, type[Event]] = {
    cls.SUBJECT: cls
    for cls in (
        NextVisit, RawArrived, RawIngested, QuantumPlanned, QuantumCompleted,
        QuantumFailed, DatasetWrite, DatasetStored, DiaResults,
    )
}
