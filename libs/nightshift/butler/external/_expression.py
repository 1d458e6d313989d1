"""Row-filter expressions of catalog selections: the registry's ``where`` language plus arithmetic.

Parsed by the registry's recursive-descent parser (``registry/_queries/_parser.py``)
with its one extension point turned on (``arithmetic=True``: ``+ - * /`` on the
same syntax tree), and evaluated vectorized with numpy on table columns -- never
with ``eval``::

    psf_flux / psf_flux_err > 50 AND NOT flag_saturated AND band IN ('g', 'r') AND id IN (1..1000)

Names are column names; literals are numbers, strings and ``TRUE``/``FALSE``.
Comparisons follow SQL's treatment of missing values: a row whose operand is
masked (null) is not selected, also under ``NOT``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._registry_exceptions import QueryError, QuerySyntaxError
from ..registry._queries import parse_where
from ..registry._queries._ast import (
    BinaryOp,
    Identifier,
    InList,
    Literal,
    Node,
    RangeLiteral,
    UnaryOp,
    walk,
)
from ._exceptions import SelectionExpressionError

__all__ = ["evaluate", "parse_filter", "referenced_columns"]

_ARITHMETIC = ("+", "-", "*", "/")


def parse_filter(text: str) -> Node:
    """Parse a selection filter; reject constructs that have no meaning on table rows.

    Raises
    ------
    SelectionExpressionError
        Syntax errors (with the position), ``POINT``/``OVERLAPS``/time literals, dotted names.
    """
    if not isinstance(text, str):
        raise SelectionExpressionError(f"a filter expression must be a str, not {type(text).__name__}")
    try:
        tree = parse_where(text, arithmetic=True)
    except QueryError as exc:
        raise SelectionExpressionError(str(exc)) from None
    for node in walk(tree):
        if isinstance(node, Identifier) and len(node.parts) > 1:
            raise SelectionExpressionError(
                str(QuerySyntaxError(f"{node.text!r}: column names are plain names (no '.')", text, node.pos)))
        if isinstance(node, BinaryOp) and node.op == "OVERLAPS" or not isinstance(
            node, (Literal, Identifier, RangeLiteral, UnaryOp, BinaryOp, InList)
        ):
            raise SelectionExpressionError(str(QuerySyntaxError(
                "POINT, OVERLAPS, time literals and (a, b) pairs are not supported on catalog rows", text,
                getattr(node, "pos", 0))))
    return tree


def referenced_columns(tree: Node) -> tuple[str, ...]:
    """Column names used by a parsed filter, in order of first use."""
    return tuple(dict.fromkeys(n.parts[0] for n in walk(tree) if isinstance(n, Identifier)))


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        k: str = value.dtype.kind
        return {"b": "bool", "i": "number", "u": "number", "f": "number", "U": "string", "S": "string"}.get(k, k)
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


class _Evaluator:
    def __init__(self, column: Callable[[str], np.ndarray], text: str, context: str) -> None:
        self.column = column
        self.text = text
        self.context = context

    def fail(self, message: str, node: Node) -> SelectionExpressionError:
        syntax = QuerySyntaxError(message, self.text, getattr(node, "pos", 0))
        return SelectionExpressionError(f"{self.context}: {syntax}")

    def need(self, value: Any, kinds: tuple[str, ...], what: str, node: Node) -> None:
        if _kind(value) not in kinds:
            raise self.fail(f"{what} needs {' or '.join(kinds)} operands, got {_kind(value)}", node)

    def eval(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Identifier):
            return self.column(node.parts[0])
        if isinstance(node, UnaryOp):
            inner = self.eval(node.operand)
            if node.op == "NOT":
                self.need(inner, ("bool",), "NOT", node)
                return np.ma.logical_not(inner) if isinstance(inner, np.ndarray) else not inner
            self.need(inner, ("number",), "unary '-'", node)
            return -inner
        if isinstance(node, BinaryOp):
            return self.binary(node)
        if isinstance(node, InList):
            return self.in_list(node)
        raise self.fail(f"unsupported expression {type(node).__name__}", node)  # pragma: no cover - parse_filter

    def binary(self, node: BinaryOp) -> Any:
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if node.op in ("AND", "OR"):
            self.need(lhs, ("bool",), node.op, node)
            self.need(rhs, ("bool",), node.op, node)
            return (np.ma.logical_and if node.op == "AND" else np.ma.logical_or)(lhs, rhs)
        if node.op in _ARITHMETIC:
            self.need(lhs, ("number",), f"'{node.op}'", node)
            self.need(rhs, ("number",), f"'{node.op}'", node)
            with np.errstate(all="ignore"):  # x / 0 -> inf/nan, as the data says
                if node.op == "+":
                    return lhs + rhs
                if node.op == "-":
                    return lhs - rhs
                if node.op == "*":
                    return lhs * rhs
                return np.true_divide(lhs, rhs)
        kl, kr = _kind(lhs), _kind(rhs)
        if kl != kr or kl not in ("number", "string", "bool"):
            raise self.fail(f"cannot compare a {kl} with a {kr} using {node.op!r}", node)
        if kl == "bool" and node.op not in ("=", "!="):
            raise self.fail(f"booleans only support = and !=, not {node.op!r}", node)
        with np.errstate(invalid="ignore"):
            a, b = lhs, rhs
            return {"=": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b, "<=": lambda: a <= b,
                    ">": lambda: a > b, ">=": lambda: a >= b}[node.op]()

    def in_list(self, node: InList) -> Any:
        lhs = self.eval(node.lhs)
        kind = _kind(lhs)
        if kind not in ("number", "string"):
            raise self.fail(f"IN needs a number or string on the left, got {kind}", node)
        data, mask = np.ma.getdata(lhs), np.ma.getmaskarray(lhs) if isinstance(lhs, np.ndarray) else False
        values: list[Any] = []
        result = np.zeros(np.shape(data), dtype=bool)
        for item in node.items:
            if isinstance(item, RangeLiteral):
                if kind != "number":
                    raise self.fail("a range a..b needs a number on the left of IN", item)
                if item.stop < item.start:
                    raise self.fail(f"empty range {item.start}..{item.stop}", item)
                with np.errstate(invalid="ignore"):
                    hit = (data >= item.start) & (data <= item.stop)
                    if item.stride != 1:
                        hit &= np.mod(data - item.start, item.stride) == 0
                result = result | hit
                continue
            value = self.eval(item)
            if _kind(value) != kind:
                raise self.fail(f"IN list value is a {_kind(value)}, but the left side is a {kind}", item)
            if isinstance(value, np.ndarray):
                result = result | np.ma.filled(data == value, False)
            else:
                values.append(value)
        if values:
            result = result | np.isin(data, values)
        if node.negated:
            result = ~result
        return np.ma.array(result, mask=mask) if np.any(mask) else result


def evaluate(tree: Node, column: Callable[[str], np.ndarray], n_rows: int, text: str, context: str) -> np.ndarray:
    """Evaluate a parsed filter to a boolean row mask (masked results count as False).

    Parameters
    ----------
    tree : Node
        From :func:`parse_filter`.
    column : callable
        Column name -> numpy (masked) array of the table's rows.
    n_rows : int
        Number of rows (for a filter without columns, e.g. ``TRUE``).
    text, context : str
        The expression and who uses it, for error messages.

    Raises
    ------
    SelectionExpressionError
        Operand types that do not fit their operator, or a result that is not a condition.
    SelectionColumnError
        Raised by ``column`` for a name the table lacks.
    """
    result = _Evaluator(column, text, context).eval(tree)
    if _kind(result) != "bool":
        raise SelectionExpressionError(
            f"{context}: the filter {text!r} must be a condition (true/false per row), not a {_kind(result)} value")
    if not isinstance(result, np.ndarray):
        return np.full(n_rows, bool(result))
    return np.asarray(np.ma.filled(result, False), dtype=bool)

