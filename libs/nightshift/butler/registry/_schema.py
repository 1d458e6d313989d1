"""The registry's tables, generated from the dimension universe.

One table per dimension (key columns of required dimensions, its own key,
implied dimensions, metadata fields, ``timespan_begin/_end`` in TAI ns,
``region`` as JSON vertices) plus ``<dimension>_skypix`` ranges of HEALPix
cells for spatial joins; dataset types, collections, datasets (one *wide*
table with a nullable column per dimension), tags, calibration validity,
metadata, data-quality flags and provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..dimensions import DimensionUniverse

__all__ = ["SCHEMA_VERSION", "RegistryTables", "build_tables"]

#: Version of the table layout below; bump with a migration in ``_migrations.py``.
SCHEMA_VERSION = 3

NAME_LENGTH = 128


def _key_type(universe: DimensionUniverse, dim: str) -> sa.types.TypeEngine[Any]:
    d = universe[dim]
    return sa.BigInteger() if d.key_type == "int" else sa.String(d.key_length)


_FIELD_SQL: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    "int": sa.BigInteger, "float": sa.Float, "string": lambda: sa.String(256), "bool": sa.Boolean,
}


_OPERATOR_SQL: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    "int": sa.BigInteger, "float": sa.Float, "string": sa.Text, "bool": sa.Boolean,
}


def build_operator_table(universe: DimensionUniverse, metadata: sa.MetaData, name: str, keys: Sequence[str],
                         columns: Mapping[str, str]) -> sa.Table:
    """The SQL table ``op_<name>`` of an operator table (REQ-0088): its key dimensions, then its columns."""
    cols: list[sa.Column[Any]] = [
        sa.Column(k, _key_type(universe, k), primary_key=True, autoincrement=False) for k in keys
    ]
    cols += [sa.Column(c, _OPERATOR_SQL[kind](), nullable=True) for c, kind in columns.items()]
    return sa.Table(f"op_{name}", metadata, *cols)


def _dataset_index_columns(universe: DimensionUniverse) -> list[tuple[str, ...]]:
    """Leading selective dimensions, each followed by the most common companion (detector, patch)."""
    out: list[tuple[str, ...]] = []
    for name in universe.names:
        dim = universe[name]
        if not dim.requires or name in ("detector", "tract", "patch"):
            continue  # roots are not selective; detector/tract/patch come second
        out.append((name, "detector") if name in ("visit", "exposure") and "detector" in universe else (name,))
    if "tract" in universe and "patch" in universe:
        out.append(("tract", "patch"))
    return out


@dataclass
class RegistryTables:
    """All tables of one registry schema."""

    metadata: sa.MetaData
    attributes: sa.Table
    dimensions: dict[str, sa.Table]
    skypix: dict[str, sa.Table]
    joins: dict[str, sa.Table]
    dataset_type: sa.Table
    collection: sa.Table
    collection_chain: sa.Table
    dataset: sa.Table
    dataset_tag: sa.Table
    dataset_calib: sa.Table
    dataset_metadata: sa.Table
    dataset_quality: sa.Table
    quantum: sa.Table
    quantum_input: sa.Table
    quantum_output: sa.Table
    _aliases: dict[tuple[str, str], sa.FromClause] = field(default_factory=dict)

    def alias(self, table: sa.Table, name: str) -> sa.FromClause:
        """A memoized alias: building one (and its column proxies) costs milliseconds on wide tables."""
        key = (table.name, name)
        found = self._aliases.get(key)
        if found is None:
            found = self._aliases[key] = table.alias(name)
            found.c  # noqa: B018 - populate the column proxies once
        return found


def build_tables(universe: DimensionUniverse, schema: str | None = None, dialect: str | None = None) -> RegistryTables:
    """Declare every registry table for ``universe`` in a fresh ``MetaData``.

    ``dialect`` (``"sqlite"``/``"postgresql"``) keeps dialect-specific index
    options to that database: validating ``postgresql_where`` imports
    SQLAlchemy's PostgreSQL dialect (~50 ms), which a SQLite registry never needs.
    None declares both.
    """
    md = sa.MetaData(schema=schema)
    prefix = f"{schema}." if schema else ""

    attributes = sa.Table(
        "butler_attributes", md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )

    dims: dict[str, sa.Table] = {}
    skypix: dict[str, sa.Table] = {}
    for name in universe.names:
        d = universe[name]
        cols: list[sa.schema.SchemaItem] = []
        for req in d.requires:
            cols.append(sa.Column(req, _key_type(universe, req), primary_key=True))
        cols.append(sa.Column(d.key_name, _key_type(universe, name), primary_key=True, autoincrement=False))
        for imp in d.implies:
            cols.append(sa.Column(imp, _key_type(universe, imp), nullable=True))
        for fname, ftype in d.fields.items():
            cols.append(sa.Column(fname, _FIELD_SQL[ftype](), nullable=True))
        if d.has_timespan:
            cols.append(sa.Column("timespan_begin", sa.BigInteger, nullable=True))
            cols.append(sa.Column("timespan_end", sa.BigInteger, nullable=True))
        if d.has_region:
            cols.append(sa.Column("region", sa.Text, nullable=True))
        # foreign keys to required and implied dimensions
        for other in (*d.requires, *d.implies):
            od = universe[other]
            local = [*[r for r in od.requires if r in (*d.requires, *d.implies)], other]
            if len(local) != len(od.requires) + 1:
                continue  # cannot express (does not happen in the shipped universe)
            remote = [f"{prefix}{other}.{c}" for c in (*od.requires, od.key_name)]
            cols.append(sa.ForeignKeyConstraint(local, remote))
        dims[name] = sa.Table(name, md, *cols)
        if d.has_region:
            key_cols = [*d.requires, name]
            skypix[name] = sa.Table(
                f"{name}_skypix", md,
                *[sa.Column(k, _key_type(universe, k), primary_key=True) for k in key_cols],
                sa.Column("pix_begin", sa.BigInteger, primary_key=True, autoincrement=False),
                sa.Column("pix_end", sa.BigInteger, nullable=False),
                sa.ForeignKeyConstraint(
                    key_cols, [f"{prefix}{name}.{c}" for c in (*d.requires, d.key_name)], ondelete="CASCADE"
                ),
                sa.Index(f"ix_{name}_skypix_pix", "pix_begin", "pix_end"),
            )

    joins: dict[str, sa.Table] = {}
    for jname, join in universe.joins.items():
        cols = [sa.Column(k, _key_type(universe, k), primary_key=True) for k in join.dimensions]
        fks = []
        for k in join.dimensions:
            kd = universe[k]
            if all(r in join.dimensions for r in kd.requires):
                fks.append(
                    sa.ForeignKeyConstraint(
                        [*kd.requires, k], [f"{prefix}{k}.{c}" for c in (*kd.requires, kd.key_name)]
                    )
                )
        joins[jname] = sa.Table(jname, md, *cols, *fks)

    dataset_type = sa.Table(
        "dataset_type", md,
        sa.Column("dataset_type_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(NAME_LENGTH), nullable=False, unique=True),
        sa.Column("dimensions", sa.Text, nullable=False),
        sa.Column("storage_class", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("is_calibration", sa.Boolean, nullable=False),
        sa.Column("metadata_fields", sa.Text, nullable=False),
    )
    collection = sa.Table(
        "collection", md,
        sa.Column("collection_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(NAME_LENGTH), nullable=False, unique=True),
        sa.Column("type", sa.SmallInteger, nullable=False),
        sa.Column("doc", sa.Text, nullable=True),
    )
    collection_chain = sa.Table(
        "collection_chain", md,
        sa.Column("parent_id", sa.Integer, sa.ForeignKey(collection.c.collection_id, ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("child_id", sa.Integer, sa.ForeignKey(collection.c.collection_id), nullable=False),
    )

    ds_cols: list[sa.schema.SchemaItem] = [
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("dataset_type_id", sa.Integer, sa.ForeignKey(dataset_type.c.dataset_type_id), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey(collection.c.collection_id), nullable=False),
        sa.Column("data_id_key", sa.String(512), nullable=False),
        sa.Column("ingest_ns", sa.BigInteger, nullable=False),
    ]
    for name in universe.names:
        ds_cols.append(sa.Column(name, _key_type(universe, name), nullable=True))
    for name in universe.names:
        d = universe[name]
        if d.requires:
            ds_cols.append(
                sa.ForeignKeyConstraint(
                    [*d.requires, name], [f"{prefix}{name}.{c}" for c in (*d.requires, d.key_name)]
                )
            )
        else:
            ds_cols.append(sa.ForeignKeyConstraint([name], [f"{prefix}{name}.{d.key_name}"]))
    # (data ID, type, run): uniqueness per run *and* the find-first lookup along a search path; the
    # data ID leads so no planner mistakes "one dataset type" for a selective filter
    ds_cols.append(sa.UniqueConstraint("data_id_key", "dataset_type_id", "run_id", name="uq_dataset_data_id_run"))
    # partial composite indexes for the selective dimension columns of `where` filters; rows whose
    # dataset type lacks the dimension (NULL) are left out, so they cost nothing on insert
    for index_cols in _dataset_index_columns(universe):
        cond = sa.text(f'"{index_cols[0]}" IS NOT NULL')
        where: dict[str, Any] = {}
        if dialect in (None, "sqlite"):
            where["sqlite_where"] = cond
        if dialect in (None, "postgresql"):
            where["postgresql_where"] = cond
        ds_cols.append(sa.Index(f"ix_dataset_{'_'.join(index_cols)}", *index_cols, **where))
    dataset = sa.Table("dataset", md, *ds_cols)

    dataset_tag = sa.Table(
        "dataset_tag", md,
        sa.Column("collection_id", sa.Integer, sa.ForeignKey(collection.c.collection_id, ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("dataset_id", sa.Uuid, sa.ForeignKey(dataset.c.id, ondelete="CASCADE"), primary_key=True),
        sa.Column("dataset_type_id", sa.Integer, nullable=False),
        sa.Column("data_id_key", sa.String(512), nullable=False),
        sa.UniqueConstraint("collection_id", "dataset_type_id", "data_id_key", name="uq_tag_data_id"),
        sa.Index("ix_dataset_tag_dataset", "dataset_id"),
    )
    dataset_calib = sa.Table(
        "dataset_calib", md,
        sa.Column("calib_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey(collection.c.collection_id, ondelete="CASCADE"),
                  nullable=False),
        sa.Column("dataset_id", sa.Uuid, sa.ForeignKey(dataset.c.id, ondelete="CASCADE"), nullable=False),
        sa.Column("dataset_type_id", sa.Integer, nullable=False),
        sa.Column("data_id_key", sa.String(512), nullable=False),
        sa.Column("valid_begin", sa.BigInteger, nullable=False),
        sa.Column("valid_end", sa.BigInteger, nullable=False),
        sa.Index("ix_dataset_calib_lookup", "collection_id", "dataset_type_id", "data_id_key"),
    )
    dataset_metadata = sa.Table(
        "dataset_metadata", md,
        sa.Column("dataset_id", sa.Uuid, sa.ForeignKey(dataset.c.id, ondelete="CASCADE"), primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),
    )
    dataset_quality = sa.Table(
        "dataset_quality", md,
        sa.Column("dataset_id", sa.Uuid, sa.ForeignKey(dataset.c.id, ondelete="CASCADE"), primary_key=True),
        sa.Column("flag", sa.String(64), primary_key=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Index("ix_dataset_quality_flag", "flag"),
    )
    quantum = sa.Table(
        "quantum", md,
        sa.Column("quantum_id", sa.Uuid, primary_key=True),
        sa.Column("task_label", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey(collection.c.collection_id), nullable=True),
        sa.Column("data_id", sa.Text, nullable=False),
        sa.Column("recorded_ns", sa.BigInteger, nullable=False),
        # which execution (one Executor.run) wrote the outputs; NULL when recorded outside one
        sa.Column("execution_id", sa.String(64), nullable=True),
    )
    quantum_input = sa.Table(
        "quantum_input", md,
        sa.Column("quantum_id", sa.Uuid, sa.ForeignKey(quantum.c.quantum_id, ondelete="CASCADE"), primary_key=True),
        sa.Column("dataset_id", sa.Uuid, sa.ForeignKey(dataset.c.id), primary_key=True),
        sa.Column("actual", sa.Boolean, nullable=False),
        sa.Index("ix_quantum_input_dataset", "dataset_id"),
    )
    quantum_output = sa.Table(
        "quantum_output", md,
        sa.Column("dataset_id", sa.Uuid, sa.ForeignKey(dataset.c.id), primary_key=True),
        sa.Column("quantum_id", sa.Uuid, sa.ForeignKey(quantum.c.quantum_id, ondelete="CASCADE"), nullable=False),
        sa.Index("ix_quantum_output_quantum", "quantum_id"),
    )
    return RegistryTables(
        md, attributes, dims, skypix, joins, dataset_type, collection, collection_chain, dataset, dataset_tag,
        dataset_calib, dataset_metadata, dataset_quality, quantum, quantum_input, quantum_output,
    )
