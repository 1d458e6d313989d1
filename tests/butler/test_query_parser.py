"""The ``where`` expression parser: syntax tree and positioned syntax errors (no database)."""

from __future__ import annotations

import pytest

from nightshift.butler.registry import QueryError, QuerySyntaxError
from nightshift.butler.registry._queries import parse_where
from nightshift.butler.registry._queries._ast import (
    BinaryOp,
    Identifier,
    InList,
    Literal,
    Point,
    RangeLiteral,
    TimeLiteral,
    TupleNode,
    UnaryOp,
)


def test_precedence_not_and_or() -> None:
    tree = parse_where("a = 1 OR NOT b = 2 AND c = 3")
    assert isinstance(tree, BinaryOp) and tree.op == "OR"
    assert isinstance(tree.rhs, BinaryOp) and tree.rhs.op == "AND"
    assert isinstance(tree.rhs.lhs, UnaryOp) and tree.rhs.lhs.op == "NOT"


def test_literals_identifiers_and_ranges() -> None:
    tree = parse_where("visit.seeing <= 0.8 and detector not in (1..9:2, 20, -3) and band <> 'r'")
    assert isinstance(tree, BinaryOp)
    left = tree.lhs.lhs
    assert left == BinaryOp("<=", Identifier(("visit", "seeing"), 0), Literal(0.8, 16), 13)
    inl = tree.lhs.rhs
    assert isinstance(inl, InList) and inl.negated
    assert inl.items[0] == RangeLiteral(1, 9, 2, inl.items[0].pos)
    assert [i.value for i in inl.items[1:]] == [20, -3]
    assert tree.rhs.op == "!="


def test_time_point_and_pair() -> None:
    tree = parse_where(
        "visit.region OVERLAPS POINT(1.5, -2) AND exposure.timespan OVERLAPS (T'2025-01-01', t'2025-01-02')"
    )
    assert isinstance(tree.lhs.rhs, Point)
    pair = tree.rhs.rhs
    assert isinstance(pair, TupleNode) and all(isinstance(i, TimeLiteral) for i in pair.items)
    assert pair.items[0].text == "2025-01-01"


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("1=1; DROP TABLE dataset", 3, "unexpected character ';'"),
        ("visit = 1 -- comment", 10, "expected AND, OR"),
        ("visit = 1 /* x */", 10, "unexpected character '/'"),
        ("band = 'r", 7, "unterminated string"),
        ("visit = ", 8, "expected a value"),
        ("visit IN 1", 9, "expected '(' after IN"),
        ("visit IN (1, 2", 14, "',' or ')'"),
        ("(visit = 1", 10, "expected ')'"),
        ("visit = 1 visit = 2", 10, "expected AND, OR"),
        ("", 0, "empty expression"),
        ("visit. = 3", 7, "expected a field name"),
        ("x IN (1..)", 9, "integer bounds"),
        ("visit = 1 UNION SELECT * FROM dataset", 23, "unexpected character '*'"),
        ("visit = 1 UNION SELECT id FROM dataset", 10, "expected AND, OR"),
    ],
)
def test_syntax_errors_carry_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_where(text)
    err = info.value
    assert err.position == position
    assert fragment in str(err)
    assert "^" in str(err) or text == ""
    assert isinstance(err, QueryError) and isinstance(err, ValueError)


def test_arithmetic_is_the_one_extension_point() -> None:
    """One grammar: ``arithmetic=True`` adds ``+ - * /`` with the usual precedence; the registry keeps it off."""
    tree = parse_where("a + b * 2 > -c / 4", arithmetic=True)
    assert isinstance(tree, BinaryOp) and tree.op == ">"
    lhs, rhs = tree.lhs, tree.rhs
    assert isinstance(lhs, BinaryOp) and lhs.op == "+"
    assert isinstance(lhs.rhs, BinaryOp) and lhs.rhs.op == "*"
    assert isinstance(rhs, BinaryOp) and rhs.op == "/" and isinstance(rhs.lhs, UnaryOp)
    plus = parse_where("x = +3", arithmetic=True)
    assert isinstance(plus, BinaryOp) and isinstance(plus.rhs, Literal) and plus.rhs.value == 3
    for text in ("a + b > 1", "a * 2 = 1", "a / 2 = 1"):
        with pytest.raises(QuerySyntaxError):
            parse_where(text)
    with pytest.raises(QuerySyntaxError, match="not SQL"):
        parse_where("a = 1; DROP TABLE x")
