"""A small recursive-descent parser for ``where`` expressions.

Grammar (keywords are case-insensitive)::

    expr       := or_expr EOF
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | predicate
    predicate  := operand [ CMP operand
                          | ["NOT"] "IN" "(" in_item ("," in_item)* ")"
                          | "OVERLAPS" operand ]
    in_item    := INT ".." INT [":" INT] | operand
    operand    := unary                                  (arithmetic=False)
                | term (("+" | "-") term)*               (arithmetic=True)
    term       := unary (("*" | "/") unary)*
    unary      := "-" unary | "+" unary (arithmetic only) | primary
    primary    := NUMBER | STRING | TIME | "TRUE" | "FALSE"
                | "POINT" "(" operand "," operand ")"
                | IDENT ("." IDENT)*
                | "(" or_expr ")" | "(" operand "," operand ")"
    CMP        := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="

Anything else -- a ``;``, a comment, a quote left open, a keyword in the
wrong place -- is a :class:`QuerySyntaxError` carrying the position.

One grammar, one extension point: ``arithmetic=True`` adds ``+ - * /`` on
operands (and the tokens ``+ * /``). The registry's ``where`` leaves it off
(SQL comparisons on dimension columns); catalog selection filters
(``butler.external``) turn it on and evaluate the same syntax tree with numpy.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ..._registry_exceptions import QuerySyntaxError
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
)

__all__ = ["parse_where"]

_KEYWORDS = {"AND", "OR", "NOT", "IN", "OVERLAPS", "TRUE", "FALSE", "POINT"}
_TOKEN_PATTERN = r"""
    (?P<ws>\s+)
  | (?P<time>[Tt]'[^']*')
  | (?P<number>\d+(?=\.\.)|\d+\.\d*(?:[eE][+-]?\d+)?|\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|\.\.|[=<>(),.:\-EXTRA])
"""
_TOKEN = {
    False: re.compile(_TOKEN_PATTERN.replace("EXTRA", ""), re.VERBOSE),
    True: re.compile(_TOKEN_PATTERN.replace("EXTRA", "+*/"), re.VERBOSE),  # arithmetic
}


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, string, time, ident, kw, op, eof
    text: str
    pos: int


def _tokenize(text: str, arithmetic: bool) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    token = _TOKEN[arithmetic]
    while pos < len(text):
        m = token.match(text, pos)
        if m is None:
            ch = text[pos]
            sql = ch in ";-/*" and not arithmetic
            hint = " (a 'where' expression is one boolean expression, not SQL)" if sql else ""
            if ch in "'\"":
                raise QuerySyntaxError("unterminated string literal", text, pos)
            raise QuerySyntaxError(f"unexpected character {ch!r}{hint}", text, pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            if kind == "ident" and value.upper() in _KEYWORDS:
                toks.append(_Tok("kw", value.upper(), pos))
            else:
                toks.append(_Tok(kind, value, pos))
        pos = m.end()
    toks.append(_Tok("eof", "", len(text)))
    return toks


class _Parser:
    def __init__(self, text: str, arithmetic: bool = False) -> None:
        self.text = text
        self.arithmetic = arithmetic
        self.toks = _tokenize(text, arithmetic)
        self.i = 0

    # helpers
    def peek(self, offset: int = 0) -> _Tok:
        return self.toks[min(self.i + offset, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> _Tok | None:
        tok = self.peek()
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str, what: str) -> _Tok:
        tok = self.accept(kind, text)
        if tok is None:
            self.fail(f"expected {what}")
        return tok

    def fail(self, message: str) -> NoReturn:
        tok = self.peek()
        found = "end of expression" if tok.kind == "eof" else repr(tok.text)
        raise QuerySyntaxError(f"{message}, found {found}", self.text, tok.pos)

    # grammar
    def parse(self) -> Node:
        if self.peek().kind == "eof":
            raise QuerySyntaxError("empty expression", self.text, 0)
        node = self.or_expr()
        if self.peek().kind != "eof":
            self.fail("expected AND, OR or the end of the expression")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while (tok := self.accept("kw", "OR")) is not None:
            node = BinaryOp("OR", node, self.and_expr(), tok.pos)
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while (tok := self.accept("kw", "AND")) is not None:
            node = BinaryOp("AND", node, self.not_expr(), tok.pos)
        return node

    def not_expr(self) -> Node:
        if (tok := self.accept("kw", "NOT")) is not None:
            return UnaryOp("NOT", self.not_expr(), tok.pos)
        return self.predicate()

    def predicate(self) -> Node:
        lhs = self.operand()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("=", "!=", "<>", "<", "<=", ">", ">="):
            self.next()
            op = "!=" if tok.text == "<>" else tok.text
            return BinaryOp(op, lhs, self.operand(), tok.pos)
        if tok.kind == "kw" and tok.text == "OVERLAPS":
            self.next()
            return BinaryOp("OVERLAPS", lhs, self.operand(), tok.pos)
        negated = False
        if tok.kind == "kw" and tok.text == "NOT" and self.peek(1).kind == "kw" and self.peek(1).text == "IN":
            self.next()
            negated = True
        if (in_tok := self.accept("kw", "IN")) is not None:
            self.expect("op", "(", "'(' after IN")
            items = [self.in_item()]
            while self.accept("op", ","):
                items.append(self.in_item())
            self.expect("op", ")", "',' or ')' in the IN list")
            return InList(lhs, tuple(items), negated, in_tok.pos)
        if negated:
            self.fail("expected IN after NOT")
        return lhs

    def in_item(self) -> Node:
        tok = self.peek()
        if tok.kind == "number" and self.peek(1).kind == "op" and self.peek(1).text == "..":
            self.next()
            self.next()
            stop = self.accept("number")
            if stop is None or not stop.text.isdigit() or not tok.text.isdigit():
                self.fail("a range needs integer bounds, e.g. 1..10")
            stride = 1
            if self.accept("op", ":"):
                s = self.accept("number")
                if s is None or not s.text.isdigit() or int(s.text) == 0:
                    self.fail("a range stride must be a positive integer, e.g. 1..10:2")
                stride = int(s.text)
            return RangeLiteral(int(tok.text), int(stop.text), stride, tok.pos)
        return self.operand()

    def operand(self) -> Node:
        if not self.arithmetic:
            return self.unary()
        return self._binary_level(("+", "-"), self.term)

    def term(self) -> Node:
        return self._binary_level(("*", "/"), self.unary)

    def _binary_level(self, ops: tuple[str, ...], sub: Callable[[], Node]) -> Node:
        node = sub()
        while (tok := self.peek()).kind == "op" and tok.text in ops:
            self.next()
            node = BinaryOp(tok.text, node, sub(), tok.pos)
        return node

    def unary(self) -> Node:
        if (tok := self.accept("op", "-")) is not None:
            inner = self.unary()
            if isinstance(inner, Literal) and isinstance(inner.value, (int, float)) and not isinstance(
                inner.value, bool
            ):
                return Literal(-inner.value, tok.pos)
            return UnaryOp("-", inner, tok.pos)
        if self.arithmetic and self.accept("op", "+") is not None:
            return self.unary()
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "number":
            self.next()
            text = tok.text
            is_float = any(c in text for c in ".eE")
            return Literal(float(text) if is_float else int(text), tok.pos)
        if tok.kind == "string":
            self.next()
            return Literal(tok.text[1:-1], tok.pos)
        if tok.kind == "time":
            self.next()
            return TimeLiteral(tok.text[2:-1], tok.pos)
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE"):
            self.next()
            return Literal(tok.text == "TRUE", tok.pos)
        if tok.kind == "kw" and tok.text == "POINT":
            self.next()
            self.expect("op", "(", "'(' after POINT")
            ra = self.operand()
            self.expect("op", ",", "',' between POINT(ra, dec)")
            dec = self.operand()
            self.expect("op", ")", "')' closing POINT(ra, dec)")
            return Point(ra, dec, tok.pos)
        if tok.kind == "ident":
            self.next()
            parts = [tok.text]
            while self.peek().kind == "op" and self.peek().text == ".":
                self.next()
                part = self.accept("ident")
                if part is None:
                    self.fail("expected a field name after '.'")
                parts.append(part.text)
            return Identifier(tuple(parts), tok.pos)
        if tok.kind == "op" and tok.text == "(":
            self.next()
            first = self.or_expr()
            if self.accept("op", ","):
                second = self.operand()
                self.expect("op", ")", "')' closing the pair")
                return TupleNode((first, second), tok.pos)
            self.expect("op", ")", "')'")
            return first
        self.fail("expected a value, a name or '('")
        raise AssertionError("unreachable")  # pragma: no cover


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str, arithmetic: bool) -> Node:
    return _Parser(text, arithmetic).parse()


def parse_where(text: str, *, arithmetic: bool = False) -> Node:
    """Parse a ``where`` expression into a syntax tree.

    Parameters
    ----------
    text : str
        The expression.
    arithmetic : bool
        Also accept ``+ - * /`` between operands (catalog selection filters).

    Raises
    ------
    QuerySyntaxError
        With ``position`` set to the offending character.
    """
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a where expression must be a str, got {type(text).__name__}")
    return _parse_cached(text, arithmetic)  # trees are immutable: safe to share
