"""The EFD in PostgreSQL: base topics at native rates, per-visit transformed summaries, one reader interface.

Tables, in the schema of :class:`EfdSettings`:

* ``base_<topic>``: ``time_ns`` (TAI ns, primary key) and one float column per field;
* ``transformed_<topic>``: one row per (instrument, visit): the visit's
  ``begin_ns``/``end_ns``/``time_ns`` (mid-time), ``n_samples`` and, per field,
  the mean (named like the field), ``<field>_min`` and ``<field>_max``, plus
  the ``transform_version`` that wrote it (see :func:`transform_visits`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import sqlalchemy as sa
from numpy.typing import ArrayLike, NDArray

from ._errors import EfdInputError, EfdSchemaError
from ._result import EfdResult
from ._settings import EfdSettings
from ._topics import TOPICS, Topic, get_topic

if TYPE_CHECKING:
    from ..butler import DatasetRef
    from ..butler.registry import Registry

__all__ = ["Efd", "EfdReader", "Form"]

Form = Literal["base", "transformed"]
FORMS: tuple[Form, ...] = ("base", "transformed")


def _tables(schema: str) -> tuple[sa.MetaData, dict[str, sa.Table], dict[str, sa.Table]]:
    md = sa.MetaData(schema=schema)
    base, transformed = {}, {}
    for topic in TOPICS.values():
        base[topic.name] = sa.Table(
            f"base_{topic.name}", md,
            sa.Column("time_ns", sa.BigInteger, primary_key=True),
            *[sa.Column(f, sa.Float(53), nullable=False) for f in topic.fields],
        )
        stats = [sa.Column(f"{f}{s}", sa.Float(53)) for f in topic.fields for s in ("", "_min", "_max")]
        transformed[topic.name] = sa.Table(
            f"transformed_{topic.name}", md,
            sa.Column("instrument", sa.String(32), primary_key=True),
            sa.Column("visit", sa.BigInteger, primary_key=True),
            sa.Column("begin_ns", sa.BigInteger, nullable=False),
            sa.Column("end_ns", sa.BigInteger, nullable=False),
            sa.Column("time_ns", sa.BigInteger, nullable=False),
            sa.Column("n_samples", sa.Integer, nullable=False),
            sa.Column("transform_version", sa.Integer, nullable=False),
            *stats,
            sa.Index(f"transformed_{topic.name}_time", "begin_ns", "end_ns"),
        )
    return md, base, transformed


class Efd:
    """The Engineering and Facility Database on PostgreSQL.

    Parameters
    ----------
    settings : EfdSettings, optional
        Where it is; from the environment (``NIGHTSHIFT_EFD_DSN`` or ``PG_DSN``) by default.

    Examples
    --------
    >>> with Efd(EfdSettings(dsn=dsn, schema_name="efd")) as efd:  # doctest: +SKIP
    ...     efd.create()
    ...     efd.write("wind", times_ns, speed=speeds, direction=directions)
    ...     efd.reader("base").query("wind", begin, end)
    """

    def __init__(self, settings: EfdSettings | None = None) -> None:
        self.settings = settings if settings is not None else EfdSettings()
        self.engine = sa.create_engine(self.settings.url(), pool_pre_ping=True)
        self.metadata, self.base_tables, self.transformed_tables = _tables(self.settings.schema_name)

    def __enter__(self) -> Efd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def create(self) -> None:
        """Create the schema and every topic's tables (idempotent)."""
        with self.engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(self.settings.schema_name, if_not_exists=True))
            self.metadata.create_all(conn)

    def drop(self) -> None:
        """Drop the schema with all its tables."""
        with self.engine.begin() as conn:
            conn.execute(sa.schema.DropSchema(self.settings.schema_name, cascade=True, if_exists=True))

    def topics(self) -> list[Topic]:
        """Every topic."""
        return list(TOPICS.values())

    def write(self, topic: str, time_ns: ArrayLike, **fields: ArrayLike) -> int:
        """Append base samples of one topic; a time already stored is kept (re-running a writer is harmless).

        Parameters
        ----------
        topic : str
            Topic name.
        time_ns : array of int
            Sample times, TAI nanoseconds.
        **fields : array of float
            One array per field of the topic, as long as ``time_ns``.

        Returns
        -------
        int
            Samples given.

        Raises
        ------
        UnknownTopicError
            No such topic.
        EfdInputError
            Missing, unknown or mis-sized fields, or non-finite values.
        """
        spec = get_topic(topic)
        if set(fields) != set(spec.fields):
            raise EfdInputError(f"topic {topic!r} has fields {sorted(spec.fields)}; got {sorted(fields)}")
        times = np.asarray(time_ns, dtype=np.int64).ravel()
        values = {f: np.asarray(v, dtype=np.float64).ravel() for f, v in fields.items()}
        for f, v in values.items():
            if len(v) != len(times):
                raise EfdInputError(f"{topic}.{f} has {len(v)} values for {len(times)} times")
            if not np.all(np.isfinite(v)):
                raise EfdInputError(f"{topic}.{f} has non-finite values")
        if len(times) == 0:
            return 0
        from sqlalchemy.dialects.postgresql import insert

        table = self.base_tables[topic]
        rows = [{"time_ns": int(t), **{f: float(values[f][i]) for f in values}} for i, t in enumerate(times)]
        with self._connect(begin=True) as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(table).on_conflict_do_nothing(index_elements=["time_ns"]), rows[start:start + 5000])
        return len(rows)

    def reader(self, form: Form = "base") -> EfdReader:
        """The query interface over one form: the same methods and arguments for both (REQ-0044)."""
        if form not in FORMS:
            raise EfdInputError(f"an EFD form is one of {list(FORMS)}, got {form!r}")
        return EfdReader(self, form)

    def _connect(self, *, begin: bool = False) -> Any:
        return _Connection(self, begin)


class _Connection:
    """A connection (or transaction) that turns 'relation does not exist' into :class:`EfdSchemaError`."""

    def __init__(self, efd: Efd, begin: bool) -> None:
        self.efd, self.begin = efd, begin
        self._cm: Any = None

    def __enter__(self) -> sa.Connection:
        self._cm = self.efd.engine.begin() if self.begin else self.efd.engine.connect()
        conn: sa.Connection = self._cm.__enter__()
        return conn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._cm.__exit__(exc_type, exc, tb)
        if isinstance(exc, sa.exc.ProgrammingError) and "does not exist" in str(exc.orig):
            raise EfdSchemaError(
                f"the EFD tables are missing in schema {self.efd.settings.schema_name!r}: call Efd.create() "
                f"(or `nightshift`'s simulator, which creates them) first"
            ) from exc


@dataclass(frozen=True)
class EfdReader:
    """Reads one form of the EFD; both forms answer the same calls with the same field columns.

    Parameters
    ----------
    efd : Efd
        The database.
    form : {"base", "transformed"}
        ``"base"``: every sample at the native rate; ``"transformed"``: one
        row per visit (means, minima, maxima) written by :func:`transform_visits`.
    """

    efd: Efd
    form: Form

    def topics(self) -> list[str]:
        """Names of the topics."""
        return sorted(TOPICS)

    def query(self, topic: str, begin: Any, end: Any, fields: Sequence[str] | None = None) -> EfdResult:
        """The samples of ``topic`` in ``[begin, end)`` (REQ-0042, REQ-0043).

        In the transformed form, the rows of the visits overlapping the window.

        Parameters
        ----------
        topic : str
            Topic name.
        begin, end : astropy Time, datetime, ISO str (UTC) or int (TAI ns)
            The window.
        fields : sequence of str, optional
            Fields to return (all by default).

        Raises
        ------
        UnknownTopicError
            No such topic; the message lists the existing ones.
        EfdInputError
            Unknown field or a window with ``end <= begin``.
        """
        from ..butler.registry import to_tai_ns

        spec, names = self._fields(topic, fields)
        b, e = to_tai_ns(begin), to_tai_ns(end)
        if e <= b:
            raise EfdInputError(f"an EFD window needs end > begin, got [{b}, {e}) TAI ns")
        if self.form == "base":
            t = self.efd.base_tables[topic]
            stmt = sa.select(t.c.time_ns, *[t.c[f] for f in names]).where(t.c.time_ns >= b, t.c.time_ns < e)
        else:
            t = self.efd.transformed_tables[topic]
            stmt = self._transformed_select(t, names).where(t.c.begin_ns < e, t.c.end_ns > b)
        return self._run(stmt.order_by(t.c.time_ns), topic, names, b, e,
                         f"no {self.form} samples of {topic!r} in [{b}, {e}) TAI ns")

    def query_visit(
        self, registry: Registry, topic: str, *, instrument: str, visit: int, fields: Sequence[str] | None = None
    ) -> EfdResult:
        """The samples of ``topic`` over one visit's timespan, from the visit's registry record (REQ-0041).

        In the transformed form, the visit's row.

        Raises
        ------
        EfdInputError
            No such visit, or a visit without a timespan.
        """
        b, e = visit_timespan(registry, "visit", instrument, visit)
        if self.form == "base":
            return self.query(topic, b, e, fields)
        spec, names = self._fields(topic, fields)
        t = self.efd.transformed_tables[topic]
        stmt = self._transformed_select(t, names).where(t.c.instrument == instrument, t.c.visit == int(visit))
        return self._run(stmt, topic, names, b, e,
                         f"visit {instrument}/{visit} has no transformed {topic!r} row: run transform_visits")

    def query_dataset(
        self, registry: Registry, ref: DatasetRef, topics: Sequence[str] | None = None
    ) -> dict[str, EfdResult]:
        """The engineering values over a dataset's exposure, per topic (REQ-0045).

        The dataset's data ID must hold a ``visit`` or an ``exposure``: its
        timespan (from the registry) is the window. An exposure-only dataset
        (a raw) in the transformed form reads the row of the exposure's visit.

        Raises
        ------
        EfdInputError
            The dataset has neither dimension, or its record has no timespan.
        """
        data_id = dict(ref.data_id)
        instrument = str(data_id.get("instrument", ""))
        names = list(topics) if topics is not None else self.topics()
        for name in names:
            get_topic(name)
        if "visit" in data_id:
            return {n: self.query_visit(registry, n, instrument=instrument, visit=int(data_id["visit"])) for n in names}
        if "exposure" not in data_id:
            raise EfdInputError(
                f"dataset {ref.dataset_type.name} {data_id} has no visit or exposure dimension: the EFD values of a "
                "dataset are those over its exposure"
            )
        exposure = int(data_id["exposure"])
        if self.form == "base":
            b, e = visit_timespan(registry, "exposure", instrument, exposure)
            return {n: self.query(n, b, e) for n in names}
        visits = registry.query_data_ids(["visit"], data_id={"instrument": instrument, "exposure": exposure})
        if len(visits) != 1:
            raise EfdInputError(f"exposure {instrument}/{exposure} belongs to {len(visits)} visits; expected one")
        return {n: self.query_visit(registry, n, instrument=instrument, visit=int(visits[0]["visit"])) for n in names}

    # -- helpers ------------------------------------------------------------

    def _fields(self, topic: str, fields: Sequence[str] | None) -> tuple[Topic, list[str]]:
        spec = get_topic(topic)
        names = list(spec.fields) if fields is None else list(fields)
        unknown = [f for f in names if f not in spec.fields]
        if unknown or not names:
            raise EfdInputError(f"topic {topic!r} has fields {list(spec.fields)}; got {names}")
        return spec, names

    @staticmethod
    def _transformed_select(t: sa.Table, names: list[str]) -> sa.Select[Any]:
        stats = [t.c[f"{f}{s}"] for f in names for s in ("_min", "_max")]
        return sa.select(t.c.time_ns, *[t.c[f] for f in names], t.c.instrument, t.c.visit, t.c.n_samples, *stats)

    def _run(self, stmt: sa.Select[Any], topic: str, names: list[str], b: int, e: int, why: str) -> EfdResult:
        with self.efd._connect() as conn:
            rows = conn.execute(stmt).all()
        keys = ["time", *names]
        if self.form == "transformed":
            keys += ["instrument", "visit", "n_samples", *[f"{f}{s}" for f in names for s in ("_min", "_max")]]
        columns: dict[str, NDArray[Any]] = {}
        for i, key in enumerate(keys):
            values = [r[i] for r in rows]
            if key in ("time", "visit", "n_samples"):
                columns[key] = np.asarray(values, dtype=np.int64)
            elif key == "instrument":
                columns[key] = np.asarray(values, dtype=str)
            else:
                columns[key] = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        return EfdResult(topic, self.form, b, e, columns, "" if rows else why)


def visit_timespan(registry: Registry, element: str, instrument: str, key: int) -> tuple[int, int]:
    """``[begin, end)`` TAI ns of a visit or exposure record.

    Raises
    ------
    EfdInputError
        No such record, or no timespan on it.
    """
    records = registry.query_dimension_records(element, data_id={"instrument": instrument, element: int(key)})
    if not records:
        raise EfdInputError(f"no {element} {instrument}/{key} in the registry")
    span = records[0]["timespan"]
    if span is None:
        raise EfdInputError(f"{element} {instrument}/{key} has no timespan: the EFD window comes from it")
    return int(span.begin_ns), int(span.end_ns)


def iter_visit_windows(
    registry: Registry, instrument: str, where: str = "", bind: Mapping[str, Any] | None = None
) -> Iterator[tuple[int, int, int, Mapping[str, Any]]]:
    """(visit, begin_ns, end_ns, record) of the instrument's visits that have a timespan, in visit order."""
    records = registry.query_dimension_records("visit", where=where, bind=bind, data_id={"instrument": instrument})
    for r in records:
        span = r["timespan"]
        if span is not None:
            yield int(r["id"]), int(span.begin_ns), int(span.end_ns), r
