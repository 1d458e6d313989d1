"""Explicit exclusion lists: datasets an operator removes from query results (REQ-0090)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["ExclusionList"]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class ExclusionList:
    """Dataset ids and data IDs to drop from query results.

    A text file holds one entry per line: a dataset UUID, or a data ID as
    ``key=value`` pairs separated by spaces or commas (``instrument=LSSTCam
    exposure=2025010100012``), matching every dataset whose data ID has those
    values. ``#`` starts a comment.
    """

    dataset_ids: frozenset[uuid.UUID] = frozenset()
    data_ids: tuple[Mapping[str, int | str], ...] = field(default_factory=tuple)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ExclusionList:
        """Read an exclusion file.

        Raises
        ------
        ValueError
            On a line that is neither a UUID nor ``key=value`` pairs (message names the line).
        """
        ids: set[uuid.UUID] = set()
        data_ids: list[dict[str, int | str]] = []
        with open(path, encoding="utf-8") as stream:
            for lineno, raw in enumerate(stream, 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                if _UUID.match(line):
                    ids.add(uuid.UUID(line))
                    continue
                entry: dict[str, int | str] = {}
                for part in re.split(r"[\s,]+", line):
                    key, sep, value = part.partition("=")
                    if not sep or not key or not value:
                        raise ValueError(
                            f"{os.fspath(path)}:{lineno}: {raw.strip()!r} is neither a dataset UUID nor "
                            "key=value pairs (e.g. 'instrument=LSSTCam exposure=12')"
                        )
                    value = value.strip("'\"")
                    entry[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
                data_ids.append(entry)
        return cls(frozenset(ids), tuple(data_ids))

    @classmethod
    def of(cls, items: Iterable[uuid.UUID | Mapping[str, int | str]]) -> ExclusionList:
        """Build from UUIDs and data-ID mappings."""
        ids = {i for i in items if isinstance(i, uuid.UUID)}
        dids = tuple(dict(i) for i in items if not isinstance(i, uuid.UUID))
        return cls(frozenset(ids), dids)

    def excludes(self, data_id: Mapping[str, int | str], dataset_id: uuid.UUID | None = None) -> bool:
        """Whether a dataset (or a data ID) is excluded."""
        if dataset_id is not None and dataset_id in self.dataset_ids:
            return True
        return any(all(k in data_id and data_id[k] == v for k, v in entry.items()) for entry in self.data_ids)

    def __bool__(self) -> bool:
        return bool(self.dataset_ids or self.data_ids)
