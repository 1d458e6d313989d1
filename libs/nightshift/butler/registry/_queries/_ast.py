"""Syntax tree of ``where`` expressions (immutable nodes, each with its source position)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "BinaryOp", "Identifier", "InList", "Literal", "Node", "Point", "RangeLiteral", "TimeLiteral", "TupleNode",
    "UnaryOp", "walk",
]


@dataclass(frozen=True)
class Literal:
    """A number, string or boolean."""

    value: int | float | str | bool
    pos: int


@dataclass(frozen=True)
class TimeLiteral:
    """``T'2025-01-01T00:00:00'`` (UTC ISO) kept as text; converted at compile time."""

    text: str
    pos: int


@dataclass(frozen=True)
class Identifier:
    """``visit``, ``visit.seeing``, ``exposure.timespan.begin`` or a bind name."""

    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class RangeLiteral:
    """``1..10`` or ``1..10:2`` inside ``IN (...)`` (inclusive, as in daf_butler)."""

    start: int
    stop: int
    stride: int
    pos: int


@dataclass(frozen=True)
class Point:
    """``POINT(ra, dec)`` in degrees."""

    ra: Node
    dec: Node
    pos: int


@dataclass(frozen=True)
class TupleNode:
    """``(a, b)``: a time range for ``OVERLAPS``."""

    items: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class UnaryOp:
    """``NOT x`` or ``-x``."""

    op: str
    operand: Node
    pos: int


@dataclass(frozen=True)
class BinaryOp:
    """``AND``, ``OR``, a comparison (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) or ``OVERLAPS``."""

    op: str
    lhs: Node
    rhs: Node
    pos: int


@dataclass(frozen=True)
class InList:
    """``x [NOT] IN (a, b, 1..5)``."""

    lhs: Node
    items: tuple[Node, ...]
    negated: bool
    pos: int


Node = Literal | TimeLiteral | Identifier | RangeLiteral | Point | TupleNode | UnaryOp | BinaryOp | InList


def walk(node: Node) -> Iterator[Node]:
    """Yield ``node`` and all its descendants (pre-order)."""
    yield node
    if isinstance(node, UnaryOp):
        yield from walk(node.operand)
    elif isinstance(node, BinaryOp):
        yield from walk(node.lhs)
        yield from walk(node.rhs)
    elif isinstance(node, InList):
        yield from walk(node.lhs)
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, TupleNode):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Point):
        yield from walk(node.ra)
        yield from walk(node.dec)
