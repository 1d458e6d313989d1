"""Which tables a query needs and how they join: the dimension join plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ...dimensions import DimensionUniverse
from .._schema import RegistryTables

__all__ = ["JoinPlan", "SpatialConstraint", "plan_join", "region_overlap"]


@dataclass(frozen=True)
class SpatialConstraint:
    """A region predicate that SQL answers only at the scale of one index cell, refined on the fetched rows.

    The registry's spatial index (``<element>_skypix``: HEALPix ranges of
    order ``COMMON_ORDER``, ~0.46 deg) finds the candidate rows; the query then
    keeps only the rows whose regions really overlap ``other``'s region, or
    really contain ``point`` (:meth:`nightshift.sky.Region.overlaps`,
    :meth:`~nightshift.sky.Region.contains`).

    Attributes
    ----------
    element : str
        Element whose record region is tested.
    other : str or None
        The other element of a region-region overlap.
    point : (ra, dec) or None
        The point of a region-point overlap, degrees.
    """

    element: str
    other: str | None = None
    point: tuple[float, float] | None = None

    @property
    def elements(self) -> tuple[str, ...]:
        """The elements whose regions the test reads."""
        return (self.element,) if self.other is None else (self.element, self.other)


@dataclass
class JoinPlan:
    """FROM items, join conditions and the column holding each dimension's value.

    ``spatial`` lists the region predicates that every result row must also
    pass exactly (the SQL conditions for them are conservative); the tables
    of their elements are in ``element_tables``.
    """

    dimensions: tuple[str, ...]
    canonical: dict[str, sa.ColumnElement[Any]]
    element_tables: dict[str, sa.FromClause]
    froms: list[sa.FromClause] = field(default_factory=list)
    conditions: list[sa.ColumnElement[bool]] = field(default_factory=list)
    needs_distinct: bool = False
    spatial: list[SpatialConstraint] = field(default_factory=list)

    def region_columns(self) -> dict[str, sa.ColumnElement[Any]]:
        """``_region_<element>``-labelled region columns of the elements that ``spatial`` tests."""
        names = dict.fromkeys(e for c in self.spatial for e in c.elements)
        return {e: self.element_tables[e].c.region.label(f"_region_{e}") for e in names}


def _needs_full_closure(universe: DimensionUniverse, full: Iterable[str]) -> bool:
    names = set(full)
    for name in names:
        dim = universe[name]
        if dim.requires:
            continue
        linked = any(name in universe[o].requires or name in universe[o].implies for o in names if o != name)
        if not linked and len(names) > 1:
            return True
    return False


def plan_join(
    universe: DimensionUniverse,
    tables: RegistryTables,
    dimensions: Iterable[str],
    *,
    field_elements: Iterable[str] = (),
    base: Mapping[str, sa.ColumnElement[Any]] | None = None,
) -> JoinPlan:
    """Plan the joins that give values to ``dimensions``.

    Parameters
    ----------
    dimensions
        Dimensions whose values the query needs.
    field_elements
        Elements whose record fields the ``where`` expression reads (their tables must be joined).
    base
        Columns that already hold some dimensions' values (e.g. the dataset
        table's); those dimensions need no table unless ``field_elements`` asks.
    """
    needed = set(dimensions) | set(field_elements)
    full = universe.required_closure(needed)
    if _needs_full_closure(universe, full):
        full = universe.full_closure(needed)
    full_set = set(full)
    canonical: dict[str, sa.ColumnElement[Any]] = dict(base or {})
    fe = set(field_elements)
    spatial = _spatial_join_elements(universe, full)
    fe.update(spatial)  # their regions are read to refine the join
    plan = JoinPlan(full, canonical, {})
    for name in full:
        dim = universe[name]
        include = (
            name not in canonical
            or name in fe
            or any(i in full_set and i not in canonical for i in dim.implies)
        )
        if not include:
            continue
        table = tables.dimensions[name]
        plan.element_tables[name] = table
        plan.froms.append(table)
        for req in dim.requires:
            if req in canonical:
                plan.conditions.append(table.c[req] == canonical[req])
            else:
                canonical[req] = table.c[req]
        if name in canonical:
            plan.conditions.append(table.c[dim.key_name] == canonical[name])
        else:
            canonical[name] = table.c[dim.key_name]
        for imp in dim.implies:
            if imp not in full_set:
                continue
            if imp in canonical:
                plan.conditions.append(table.c[imp] == canonical[imp])
            else:
                canonical[imp] = table.c[imp]
    for jname, join in universe.joins.items():
        if all(d in full_set for d in join.dimensions):
            jt = tables.joins[jname]
            plan.froms.append(jt)
            plan.conditions.extend(jt.c[d] == canonical[d] for d in join.dimensions)
            plan.needs_distinct = True
    # automatic spatial join between region elements of different families
    for i in range(len(spatial)):
        for j in range(i + 1, len(spatial)):
            plan.conditions.append(region_overlap(universe, tables, canonical, spatial[i], spatial[j]))
            plan.spatial.append(SpatialConstraint(spatial[i], other=spatial[j]))
    return plan


def _spatial_join_elements(universe: DimensionUniverse, full: Iterable[str]) -> list[str]:
    """The region elements to join spatially: the most specific one per family, if there are two families."""
    families: dict[str, str] = {}
    for name in full:
        dim = universe[name]
        if not dim.has_region:
            continue
        closure = universe.required_closure([name])
        root = closure[0]
        best = families.get(root)
        if best is None or len(universe.required_closure([best])) < len(closure):
            families[root] = name
    return sorted(families.values()) if len(families) >= 2 else []


def _skypix_keys(
    universe: DimensionUniverse, alias: sa.FromClause, element: str, canonical: Mapping[str, sa.ColumnElement[Any]]
) -> list[sa.ColumnElement[bool]]:
    dim = universe[element]
    return [alias.c[k] == canonical[k] for k in (*dim.requires, element)]


def region_overlap(
    universe: DimensionUniverse,
    tables: RegistryTables,
    canonical: Mapping[str, sa.ColumnElement[Any]],
    a: str,
    b: str,
) -> sa.ColumnElement[bool]:
    """EXISTS a pair of HEALPix ranges of element ``a`` and ``b`` that intersect.

    Conservative at the scale of one index cell: pair it with a
    :class:`SpatialConstraint` so the rows are refined exactly.
    """
    sa_ = tables.alias(tables.skypix[a], f"{a}_px")
    sb = tables.alias(tables.skypix[b], f"{b}_px")
    return sa.exists(
        sa.select(sa.literal(1)).select_from(sa_, sb).where(
            *_skypix_keys(universe, sa_, a, canonical),
            *_skypix_keys(universe, sb, b, canonical),
            sa_.c.pix_begin < sb.c.pix_end,
            sb.c.pix_begin < sa_.c.pix_end,
        )
    )


def point_overlap(
    universe: DimensionUniverse,
    tables: RegistryTables,
    canonical: Mapping[str, sa.ColumnElement[Any]],
    element: str,
    pixel: int,
) -> sa.ColumnElement[bool]:
    """EXISTS a HEALPix range of ``element`` holding ``pixel``."""
    px = tables.alias(tables.skypix[element], f"{element}_pt")
    return sa.exists(
        sa.select(sa.literal(1)).select_from(px).where(
            *_skypix_keys(universe, px, element, canonical),
            px.c.pix_begin <= sa.literal(pixel),
            px.c.pix_end > sa.literal(pixel),
        )
    )
