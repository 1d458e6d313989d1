"""Check that SQL text is one read-only statement, and find its named bind parameters.

The check is lexical (no SQL parser is needed): comments, string literals,
quoted identifiers and PostgreSQL dollar-quoted strings are skipped, then

* the statement must start with ``SELECT`` or ``WITH`` (after optional ``(``);
* there must be exactly one statement (one optional trailing ``;``);
* no keyword that writes, changes the schema or escapes the statement may
  appear (``INSERT``, ``UPDATE``, ``DELETE``, ``MERGE``, ``INTO`` ... see
  :data:`FORBIDDEN_KEYWORDS`), which also rejects PostgreSQL's data-modifying
  ``WITH d AS (DELETE ... RETURNING *) SELECT ...`` and ``SELECT ... INTO``.

This is the first line of defence; the second is that queries run in a
read-only transaction (PostgreSQL) or on a read-only connection (SQLite), so a
function with side effects that slips through is refused by the database.

Bind parameters are written ``:name`` (SQLAlchemy ``text()`` style);
PostgreSQL casts (``x::int``) are not parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._exceptions import QueryDefinitionError

__all__ = ["FORBIDDEN_KEYWORDS", "CheckedSql", "check_read_only_sql"]

#: Words that may not appear outside strings/comments/quoted identifiers of a query dataset's SQL.
FORBIDDEN_KEYWORDS = frozenset({
    "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "TRUNCATE", "DROP", "ALTER", "CREATE", "GRANT", "REVOKE",
    "COPY", "CALL", "EXECUTE", "EXEC", "INTO", "ATTACH", "DETACH", "PRAGMA", "VACUUM", "REINDEX", "LOCK",
    "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "SET", "RESET",
})

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)(?!:)")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class CheckedSql:
    """A statement that passed :func:`check_read_only_sql`.

    Attributes
    ----------
    text : str
        The statement without a trailing ``;``.
    bind_names : tuple of str
        Named bind parameters (``:name``), in order of first use.
    """

    text: str
    bind_names: tuple[str, ...]


def _code_segments(sql: str) -> list[tuple[int, str]]:
    """The parts of ``sql`` that are code (not comments/strings/quoted identifiers), with their offsets.

    Raises
    ------
    QueryDefinitionError
        On a string, quoted identifier or comment left open.
    """
    out: list[tuple[int, str]] = []
    i, start, n = 0, 0, len(sql)

    def close(end: int) -> None:
        if end > start:
            out.append((start, sql[start:end]))

    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            close(i)
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
            start = i
        elif sql.startswith("/*", i):
            close(i)
            depth, j = 1, i + 2
            while depth and j < n:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise QueryDefinitionError(f"the SQL has a /* comment that is never closed (at character {i})")
            out.append((i, " "))  # a comment separates tokens
            i = start = j
        elif ch in "'\"`":
            close(i)
            j = i + 1
            while True:
                k = sql.find(ch, j)
                if k < 0:
                    what = "string literal" if ch == "'" else "quoted identifier"
                    raise QueryDefinitionError(f"the SQL has a {what} that is never closed (at character {i})")
                if sql.startswith(ch * 2, k):  # doubled quote: an escaped quote inside
                    j = k + 2
                    continue
                break
            out.append((i, "'' " if ch == "'" else '"q" '))  # keeps "x = 'a'" a comparison with a value
            i = start = k + 1
        elif ch == "$" and (m := _DOLLAR.match(sql, i)) is not None and (i == 0 or not re.match(r"\w", sql[i - 1])):
            close(i)
            tag = m.group()
            k = sql.find(tag, m.end())
            if k < 0:
                raise QueryDefinitionError(f"the SQL has a dollar-quoted string {tag} that is never closed")
            out.append((i, "'' "))
            i = start = k + len(tag)
        else:
            i += 1
    close(n)
    return out


def check_read_only_sql(sql: str) -> CheckedSql:
    """Accept ``sql`` only if it is one read-only ``SELECT``/``WITH`` statement.

    Parameters
    ----------
    sql : str
        The query text, with ``:name`` bind parameters.

    Returns
    -------
    CheckedSql
        The statement (trailing ``;`` removed) and its bind parameter names.

    Raises
    ------
    QueryDefinitionError
        With a message saying what is wrong and how to fix it.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise QueryDefinitionError("the query SQL is empty: give one SELECT (or WITH ... SELECT) statement")
    segments = _code_segments(sql)
    code = "".join(text for _, text in segments)
    stripped = code.rstrip()
    if stripped.endswith(";"):
        stripped = stripped[:-1]
    if ";" in stripped:
        raise QueryDefinitionError(
            "the SQL holds more than one statement (a ';' before the end): a query dataset is exactly one "
            "SELECT or WITH statement"
        )
    words = [w.upper() for w in _WORD.findall(stripped)]
    first = stripped.lstrip().lstrip("(").lstrip()
    head = _WORD.match(first)
    if head is None or head.group().upper() not in ("SELECT", "WITH"):
        found = head.group() if head is not None else (first[:1] or "nothing")
        raise QueryDefinitionError(
            f"a query dataset must be a read-only SELECT or WITH statement, but this one starts with {found!r}"
        )
    bad = sorted({w for w in words if w in FORBIDDEN_KEYWORDS})
    if bad:
        raise QueryDefinitionError(
            f"the SQL uses {', '.join(bad)}, which may modify the database or leave the statement; a query "
            "dataset may only read (if a column has such a name, quote it as an identifier, e.g. \"update\")"
        )
    names: dict[str, None] = {}
    for _, text in segments:
        for m in _BIND.finditer(text):
            names.setdefault(m.group(1), None)
    # the statement without the trailing ';' (and whatever follows it: only whitespace or comments)
    text = sql.rstrip()
    if code.rstrip().endswith(";"):
        last_semicolon = max(off + seg.rfind(";") for off, seg in segments if ";" in seg)
        text = sql[:last_semicolon].rstrip()
    return CheckedSql(text, tuple(names))
