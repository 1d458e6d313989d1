"""Compile a ``where`` syntax tree to a SQLAlchemy boolean expression.

Every value from the expression or from ``bind`` becomes a bound parameter;
no text of the expression ever reaches the SQL string.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..._registry_exceptions import QueryNameError, QueryTypeError
from ...dimensions import DimensionUniverse
from .._operator_tables import OperatorTable
from .._schema import RegistryTables
from .._timespan import Timespan, to_tai_ns
from ._ast import (
    BinaryOp,
    Identifier,
    InList,
    Literal,
    Node,
    Point,
    RangeLiteral,
    TimeLiteral,
    TupleNode,
    UnaryOp,
    walk,
)
from ._plan import JoinPlan, SpatialConstraint, point_overlap, region_overlap

__all__ = ["WhereCompiler", "bind_parameters", "bind_signature", "referenced_names"]

_NUMERIC = {"int", "float"}


@dataclass(frozen=True)
class _Typed:
    kind: str  # int, float, string, bool, time, timespan, region, point, pair, list
    sql: Any = None
    element: str | None = None
    value: Any = None


def _kind_of_value(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int) or hasattr(value, "__index__"):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Timespan):
        return "timespan_value"
    if isinstance(value, datetime.datetime) or type(value).__name__ == "Time":
        return "time"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "list"
    return type(value).__name__


def bind_parameters(bind: Mapping[str, Any]) -> dict[str, Any]:
    """Statement parameters (``b_<name>``) for ``bind`` values, converted as the compiler does."""
    out: dict[str, Any] = {}
    for name, value in bind.items():
        kind = _kind_of_value(value)
        if kind == "time":
            out[f"b_{name}"] = to_tai_ns(value)
        elif kind == "timespan_value":
            out[f"b_{name}_begin"], out[f"b_{name}_end"] = value.begin_ns, value.end_ns
        elif kind == "list":
            out[f"b_{name}"] = [int(v) if _kind_of_value(v) == "int" else v for v in value]
        elif kind == "int":
            out[f"b_{name}"] = int(value)
        else:
            out[f"b_{name}"] = value
    return out


def bind_signature(bind: Mapping[str, Any]) -> tuple[tuple[Any, ...], ...]:
    """What a compiled statement depends on in ``bind``: names and value kinds, not values."""
    sig: list[tuple[Any, ...]] = []
    for name in sorted(bind):
        value = bind[name]
        kind = _kind_of_value(value)
        if kind == "list":
            sig.append((name, kind, tuple(sorted({_kind_of_value(v) for v in value}))))
        else:
            sig.append((name, kind))
    return tuple(sig)


def referenced_names(node: Node, universe: DimensionUniverse, bind: Mapping[str, Any], text: str,
                     operator_tables: Mapping[str, tuple[OperatorTable, sa.Table]] | None = None) -> tuple[
    set[str], set[str]
]:
    """(dimensions, elements whose fields are read) that an expression refers to.

    An operator table's name brings in its key dimensions (REQ-0088).

    Raises
    ------
    QueryNameError
        If an identifier is neither a dimension, an operator table nor a bind name.
    """
    operators = operator_tables or {}
    dims: set[str] = set()
    elements: set[str] = set()
    for n in walk(node):
        if not isinstance(n, Identifier):
            continue
        head = n.parts[0]
        if len(n.parts) == 1 and head in bind:
            continue
        if head not in universe and head in operators:
            dims.update(operators[head][0].keys)
            continue
        if head not in universe:
            known = ", ".join(universe.names)
            tables = f", an operator table ({', '.join(operators)})" if operators else ""
            if len(n.parts) == 1:
                raise QueryNameError(
                    f"unknown name {head!r}: not a dimension ({known}){tables} nor a bind value "
                    f"({', '.join(sorted(bind)) or 'none given'})",
                    text, n.pos,
                )
            raise QueryNameError(f"unknown dimension {head!r}; known dimensions: {known}", text, n.pos)
        dims.add(head)
        if len(n.parts) > 1:
            dim = universe[head]
            fname = n.parts[1]
            if fname == dim.key_name or fname in dim.requires:
                dims.update(universe.required_closure([head]))
                continue
            elements.add(head)  # (a region predicate reads the record's region to refine the skypix match)
    return dims, elements


class WhereCompiler:
    """Turns a syntax tree into SQL over the columns of a :class:`JoinPlan`."""

    def __init__(
        self,
        universe: DimensionUniverse,
        tables: RegistryTables,
        plan: JoinPlan,
        bind: Mapping[str, Any],
        text: str,
        *,
        operator_tables: Mapping[str, tuple[OperatorTable, sa.Table]] | None = None,
    ) -> None:
        self.universe = universe
        self.tables = tables
        self.plan = plan
        self.bind = bind
        self.text = text
        self.operator_tables = operator_tables or {}
        # True while the node being compiled must hold for a row to match (reached from the root through
        # AND only): region predicates there are also refined exactly on the rows (plan.spatial).
        self._required = True

    def compile(self, node: Node) -> sa.ColumnElement[bool]:
        self._required = True
        typed = self._expr(node)
        if typed.kind != "bool":
            raise QueryTypeError(
                f"the where expression must be a condition (true/false), not a {typed.kind} value",
                self.text, _pos(node),
            )
        condition: sa.ColumnElement[bool] = typed.sql
        return condition

    # -- nodes ------------------------------------------------------------

    def _expr(self, node: Node) -> _Typed:
        if isinstance(node, Literal):
            return _Typed(_kind_of_value(node.value), sa.literal(node.value), value=node.value)
        if isinstance(node, TimeLiteral):
            try:
                ns = to_tai_ns(node.text)
            except TypeError as exc:
                raise QueryTypeError(f"bad time literal T'{node.text}': {exc}", self.text, node.pos) from exc
            return _Typed("time", sa.literal(ns, sa.BigInteger), value=ns)
        if isinstance(node, Identifier):
            return self._identifier(node)
        if isinstance(node, UnaryOp):
            required, self._required = self._required, False
            try:
                inner = self._expr(node.operand)
            finally:
                self._required = required
            if node.op == "NOT":
                self._need(inner, {"bool"}, "NOT", node.pos)
                return _Typed("bool", sa.not_(inner.sql))
            self._need(inner, _NUMERIC, "unary '-'", node.pos)
            return _Typed(inner.kind, -inner.sql)
        if isinstance(node, BinaryOp):
            return self._binary(node)
        if isinstance(node, InList):
            return self._in(node)
        if isinstance(node, Point):
            ra, dec = self._expr(node.ra), self._expr(node.dec)
            for v in (ra, dec):
                if v.kind not in _NUMERIC or v.value is None:
                    raise QueryTypeError("POINT(ra, dec) takes two numbers (degrees)", self.text, node.pos)
            return _Typed("point", value=(float(ra.value), float(dec.value)))
        if isinstance(node, TupleNode):
            return _Typed("pair", value=tuple(self._expr(i) for i in node.items))
        if isinstance(node, RangeLiteral):
            raise QueryTypeError("a range a..b is only allowed inside IN (...)", self.text, node.pos)
        raise QueryTypeError(f"unsupported expression {node!r}", self.text, _pos(node))  # pragma: no cover

    def _identifier(self, node: Identifier) -> _Typed:
        parts = node.parts
        head = parts[0]
        if len(parts) == 1 and head in self.bind:
            # bind values become *named* parameters, so a cached statement can be re-run with new values
            # (see bind_parameters)
            value = self.bind[head]
            kind = _kind_of_value(value)
            if kind == "time":
                ns = to_tai_ns(value)
                return _Typed("time", sa.bindparam(f"b_{head}", ns, type_=sa.BigInteger), value=ns)
            if kind == "list":
                return _Typed("list", sql=head, value=list(value))
            if kind == "timespan_value":
                return _Typed("timespan_value", sql=head, value=value)
            if kind not in ("int", "float", "string", "bool"):
                raise QueryTypeError(f"bind value {head!r} has unsupported type {kind}", self.text, node.pos)
            if kind == "int":
                value = int(value)
            return _Typed(kind, sa.bindparam(f"b_{head}", value), value=value)
        if head not in self.universe and head in self.operator_tables:
            return self._operator(node)
        dim = self.universe[head]  # validated by referenced_names
        if len(parts) == 1:
            return _Typed(dim.key_type, self.plan.canonical[head])
        fname = parts[1]
        table = self.plan.element_tables.get(head)
        if fname == dim.key_name and len(parts) == 2:
            return _Typed(dim.key_type, self.plan.canonical[head])
        if fname in (*dim.requires, *dim.implies) and len(parts) == 2:
            col = self.plan.canonical.get(fname)
            if col is None or fname in dim.implies:
                assert table is not None  # the plan joins the table of every element a field of which is named
                col = table.c[fname]
            return _Typed(self.universe[fname].key_type, col)
        if fname in dim.fields and len(parts) == 2:
            assert table is not None
            return _Typed(dim.fields[fname], table.c[fname])
        if fname == "timespan" and dim.has_timespan:
            assert table is not None
            if len(parts) == 2:
                return _Typed("timespan", (table.c.timespan_begin, table.c.timespan_end), element=head)
            if len(parts) == 3 and parts[2] in ("begin", "end"):
                return _Typed("time", table.c[f"timespan_{parts[2]}"])
        if fname == "region" and dim.has_region and len(parts) == 2:
            return _Typed("region", element=head)
        fields = [dim.key_name, *dim.requires, *dim.implies, *dim.fields]
        if dim.has_timespan:
            fields += ["timespan", "timespan.begin", "timespan.end"]
        if dim.has_region:
            fields.append("region")
        raise QueryNameError(
            f"{head!r} has no field {'.'.join(parts[1:])!r}; its fields are: {', '.join(fields)}",
            self.text, node.pos,
        )

    def _operator(self, node: Identifier) -> _Typed:
        """An operator table (REQ-0088): bare, "the data ID has a row"; ``name.column``, the row's value (or NULL).

        Both are correlated subqueries on the table's key dimensions (its primary key), so they add no rows.
        """
        definition, table = self.operator_tables[node.parts[0]]
        match = [table.c[k] == self.plan.canonical[k] for k in definition.keys]
        if len(node.parts) == 1:
            return _Typed("bool", sa.exists(sa.select(sa.literal(1)).select_from(table).where(*match)))
        column = node.parts[1]
        if len(node.parts) == 2 and column in definition.columns:
            return _Typed(definition.columns[column], sa.select(table.c[column]).where(*match).scalar_subquery())
        raise QueryNameError(
            f"operator table {definition.name!r} has no column {'.'.join(node.parts[1:])!r}; its columns are: "
            f"{', '.join(definition.columns) or 'none'}", self.text, node.pos,
        )

    def _binary(self, node: BinaryOp) -> _Typed:
        required = self._required
        self._required = required and node.op == "AND"
        try:
            lhs, rhs = self._expr(node.lhs), self._expr(node.rhs)
        finally:
            self._required = required
        if node.op in ("AND", "OR"):
            self._need(lhs, {"bool"}, node.op, node.pos)
            self._need(rhs, {"bool"}, node.op, node.pos)
            fn = sa.and_ if node.op == "AND" else sa.or_
            return _Typed("bool", fn(lhs.sql, rhs.sql))
        if node.op == "OVERLAPS":
            return self._overlaps(lhs, rhs, node.pos)
        compatible = (
            (lhs.kind in _NUMERIC and rhs.kind in _NUMERIC)
            or (lhs.kind == rhs.kind and lhs.kind in ("string", "bool", "time"))
            or {lhs.kind, rhs.kind} == {"time", "int"}  # an int is TAI nanoseconds
        )
        if not compatible:
            raise QueryTypeError(
                f"cannot compare a {lhs.kind} with a {rhs.kind} using {node.op!r}", self.text, node.pos
            )
        if lhs.kind == "bool" and node.op not in ("=", "!="):
            raise QueryTypeError(f"booleans only support = and !=, not {node.op!r}", self.text, node.pos)
        a, b = lhs.sql, rhs.sql
        ops = {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}
        return _Typed("bool", ops[node.op])

    def _in(self, node: InList) -> _Typed:
        lhs = self._expr(node.lhs)
        if lhs.kind not in ("int", "float", "string"):
            raise QueryTypeError(f"IN needs a number or string on the left, got {lhs.kind}", self.text, node.pos)
        values: list[Any] = []
        bound_lists: list[str] = []
        ranges: list[sa.ColumnElement[bool]] = []
        for item in node.items:
            if isinstance(item, RangeLiteral):
                if lhs.kind != "int":
                    raise QueryTypeError("a range a..b needs an integer on the left of IN", self.text, item.pos)
                if item.stop < item.start:
                    raise QueryTypeError(f"empty range {item.start}..{item.stop}", self.text, item.pos)
                if item.stride == 1:
                    # (not BETWEEN: SQLite then proves "x IS NOT NULL" for the partial indexes)
                    ranges.append(sa.and_(lhs.sql >= sa.literal(item.start), lhs.sql <= sa.literal(item.stop)))
                else:
                    values.extend(range(item.start, item.stop + 1, item.stride))
                continue
            typed = self._expr(item)
            if typed.kind == "list":
                bound_lists.append(typed.sql)
            items = typed.value if typed.kind == "list" else [typed.value]
            if typed.kind != "list" and typed.value is None:
                raise QueryTypeError("IN (...) takes literal values, ranges or bind names", self.text, _pos(item))
            for v in items:
                vk = _kind_of_value(v)
                ok = (lhs.kind in _NUMERIC and vk in _NUMERIC) or (lhs.kind == vk)
                if not ok:
                    raise QueryTypeError(
                        f"IN list value {v!r} is a {vk}, but the left side is a {lhs.kind}", self.text, _pos(item)
                    )
                if typed.kind != "list":
                    values.append(int(v) if vk == "int" else v)
        clauses = list(ranges)
        if values:
            clauses.append(lhs.sql.in_(values))
        for name in bound_lists:
            clauses.append(lhs.sql.in_(sa.bindparam(f"b_{name}", bind_parameters({name: self.bind[name]})[f"b_{name}"],
                                                    expanding=True)))
        cond = sa.or_(*clauses) if len(clauses) > 1 else clauses[0]
        return _Typed("bool", sa.not_(cond) if node.negated else cond)

    def _overlaps(self, lhs: _Typed, rhs: _Typed, pos: int) -> _Typed:
        if lhs.kind != "timespan" and rhs.kind == "timespan":
            lhs, rhs = rhs, lhs
        if lhs.kind != "region" and rhs.kind == "region":
            lhs, rhs = rhs, lhs
        if lhs.kind == "timespan":
            begin, end = lhs.sql
            if rhs.kind in ("time", "int"):  # an int is TAI nanoseconds
                return _Typed("bool", sa.and_(begin <= rhs.sql, end > rhs.sql))
            if rhs.kind == "pair" and all(v.kind in ("time", "int") for v in rhs.value) and len(rhs.value) == 2:
                t1, t2 = rhs.value
                return _Typed("bool", sa.and_(begin < t2.sql, end > t1.sql))
            if rhs.kind == "timespan_value":
                b_end = sa.bindparam(f"b_{rhs.sql}_end", rhs.value.end_ns, type_=sa.BigInteger)
                b_begin = sa.bindparam(f"b_{rhs.sql}_begin", rhs.value.begin_ns, type_=sa.BigInteger)
                return _Typed("bool", sa.and_(begin < b_end, end > b_begin))
            if rhs.kind == "timespan":
                b2, e2 = rhs.sql
                return _Typed("bool", sa.and_(begin < e2, b2 < end))
            raise QueryTypeError(
                "a timespan OVERLAPS a time T'...', a pair (T'...', T'...') or another timespan", self.text, pos
            )
        if lhs.kind == "region":
            assert lhs.element is not None  # every "region" operand names its element (see _expr)
            if rhs.kind == "point":
                from ....sky import point_pixel

                ra, dec = rhs.value
                try:
                    pixel = point_pixel(ra, dec)
                except ValueError as exc:
                    raise QueryTypeError(str(exc), self.text, pos) from exc
                if self._required and lhs.element is not None:
                    self.plan.spatial.append(SpatialConstraint(lhs.element, point=(ra, dec)))
                return _Typed("bool", point_overlap(self.universe, self.tables, self.plan.canonical, lhs.element,
                                                    pixel))
            if rhs.kind == "region":
                assert rhs.element is not None
                if self._required and lhs.element and rhs.element and lhs.element != rhs.element:
                    a, b = sorted((lhs.element, rhs.element))
                    constraint = SpatialConstraint(a, other=b)
                    if constraint not in self.plan.spatial:
                        self.plan.spatial.append(constraint)
                return _Typed("bool", region_overlap(self.universe, self.tables, self.plan.canonical, lhs.element,
                                                     rhs.element))
            raise QueryTypeError("a region OVERLAPS a POINT(ra, dec) or another region", self.text, pos)
        raise QueryTypeError(f"OVERLAPS needs a timespan or region, got {lhs.kind}", self.text, pos)

    def _need(self, typed: _Typed, kinds: set[str], what: str, pos: int) -> None:
        if typed.kind not in kinds:
            raise QueryTypeError(f"{what} needs {' or '.join(sorted(kinds))}, got {typed.kind}", self.text, pos)


def _pos(node: Node) -> int:
    return getattr(node, "pos", 0)
