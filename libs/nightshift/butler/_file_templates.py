"""File templates: the relative path of a dataset inside a datastore, from configuration.

A template is a ``str.format``-style string over these fields:

``run``, ``run_flat`` (the run with ``/`` as ``_``, so a file *name* alone is
unique), ``dataset_type`` (parent name), ``component``, ``storage_class``,
``id`` (the dataset UUID), ``data_id`` (all data ID values as ``k=v`` joined
by ``_``) and any dimension name (``visit``, ``detector`` ...), with optional
format specs (``{visit:08d}``). Example::

    templates:
      default: "{run}/{dataset_type}/{dataset_type}_{data_id}_{run_flat}"
      calexp: "{run}/calexp/{instrument}/{visit:08d}/calexp_{instrument}_{visit:08d}_{detector:03d}_{run}"

Paths are fully predictable (DMS-MWBT-REQ-0066). A template must name ``run``
and every dimension of the dataset type, or ``id``, so paths are unique
(DMS-MWBT-REQ-0078). Values are sanitized: anything but letters, digits and
``._+=-`` becomes ``_``, and no value can be ``.``/``..`` or start with ``.``,
so no data ID can escape the datastore root.
"""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Mapping
from typing import Any

from .._exceptions import NightshiftError
from ._dataset_ref import DatasetRef
from ._dataset_type import DatasetType

__all__ = ["DEFAULT_TEMPLATE", "FileTemplate", "FileTemplateError", "FileTemplates", "sanitize_path_component"]


class FileTemplateError(NightshiftError, ValueError):
    """A file template is invalid, or would give a non-unique path or one outside the datastore root."""

    error_type = "file_template"


DEFAULT_TEMPLATE = "{run}/{dataset_type}/{dataset_type}_{data_id}_{run_flat}"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_SPECIAL = {"run", "run_flat", "dataset_type", "component", "storage_class", "id", "data_id"}


def sanitize_path_component(value: Any) -> str:
    """One safe path segment from any value (never empty, ``.``, ``..`` or hidden)."""
    text = _UNSAFE.sub("_", str(value))
    if not text:
        return "_"
    if text.startswith("."):
        text = "_" + text[1:]
    return text


def _sanitize_run(run: str) -> str:
    return "/".join(sanitize_path_component(part) for part in run.split("/") if part) or "_"


class FileTemplate:
    """One file template (see module docs).

    Raises
    ------
    FileTemplateError
        If the template is absolute, contains ``..``, or is not a valid format string.
    """

    def __init__(self, template: str) -> None:
        if not isinstance(template, str) or not template.strip():
            raise FileTemplateError(f"file template {template!r} is empty")
        if template.startswith("/") or template.startswith("\\"):
            raise FileTemplateError(f"file template {template!r} must be relative to the datastore root")
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise FileTemplateError(f"file template {template!r} is not a valid format string: {exc}") from exc
        literal = "".join(lit for lit, _, _, _ in parsed)
        if any(seg == ".." for seg in literal.replace("\\", "/").split("/")):
            raise FileTemplateError(f"file template {template!r} contains '..'")
        self.fields: tuple[str, ...] = tuple(f for _, f, _, _ in parsed if f is not None)
        for f in self.fields:
            if not f or not f.isidentifier():
                raise FileTemplateError(f"file template {template!r}: field {f!r} must be a plain name")
        self.template = template

    def __repr__(self) -> str:
        return f"FileTemplate({self.template!r})"

    def check_unique(self, dataset_type: DatasetType) -> None:
        """Raise FileTemplateError unless the template identifies every dataset of the type uniquely."""
        if "id" in self.fields:
            return
        named = set(self.fields)
        if "data_id" in named:
            named |= set(dataset_type.dimensions)
        if "run_flat" in named:
            named.add("run")
        missing = [d for d in ("run", *dataset_type.dimensions) if d not in named]
        if missing:
            raise FileTemplateError(
                f"file template {self.template!r} does not name {missing} of dataset type "
                f"{dataset_type.name!r}: its paths would not be unique (add them, or '{{id}}')"
            )

    def format(self, ref: DatasetRef) -> str:
        """The relative POSIX path (no extension) of ``ref``.

        Raises
        ------
        FileTemplateError
            If a field has no value or the result would not be unique / safe.
        """
        dt = ref.dataset_type
        self.check_unique(dt)
        values: dict[str, Any] = {
            "run": _sanitize_run(ref.run),
            "run_flat": _sanitize_run(ref.run).replace("/", "_"),
            "dataset_type": sanitize_path_component(dt.parent_name),
            "component": sanitize_path_component(dt.component or ""),
            "storage_class": sanitize_path_component(dt.storage_class),
            "id": str(ref.id),
            "data_id": "_".join(
                f"{sanitize_path_component(k)}={sanitize_path_component(v)}" for k, v in ref.data_id.items()
            ) or "_",
        }
        for key, value in ref.data_id.items():
            if key in _SPECIAL:
                continue
            values[key] = value if isinstance(value, int) else sanitize_path_component(value)
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise FileTemplateError(
                f"file template {self.template!r} needs {missing}, absent from data ID {dict(ref.data_id)}"
            )
        try:
            path = self.template.format(**values)
        except (ValueError, TypeError) as exc:
            raise FileTemplateError(
                f"file template {self.template!r} cannot format {dict(ref.data_id)}: {exc}"
            ) from exc
        # Formatted ints with specs cannot introduce separators, but check the result anyway.
        norm = posixpath.normpath(path)
        if norm.startswith("/") or norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
            raise FileTemplateError(f"file template {self.template!r} gives unsafe path {path!r}")
        return norm


class FileTemplates:
    """Templates by dataset type name, then storage class, then ``default``.

    Parameters
    ----------
    config : mapping of str to str, optional
        ``{"default": ..., "<dataset type or storage class>": ...}``.
    """

    def __init__(self, config: Mapping[str, str] | None = None) -> None:
        config = dict(config or {})
        self.default = FileTemplate(config.pop("default", DEFAULT_TEMPLATE))
        self._templates = {k: FileTemplate(v) for k, v in config.items()}

    def get_template(self, dataset_type: DatasetType) -> FileTemplate:
        """The template for ``dataset_type``."""
        return (
            self._templates.get(dataset_type.name)
            or self._templates.get(dataset_type.parent_name)
            or self._templates.get(dataset_type.storage_class)
            or self.default
        )

    def path(self, ref: DatasetRef) -> str:
        """The relative path (without extension) of ``ref``.

        Raises
        ------
        FileTemplateError
            As :meth:`FileTemplate.format`; also when a template shared by
            several dataset types (``default`` or a storage class's) names
            neither ``dataset_type`` nor ``id``, so two types could collide.
        """
        template = self.get_template(ref.dataset_type)
        shared = template is self.default or template is self._templates.get(ref.dataset_type.storage_class)
        if shared and not {"dataset_type", "id"} & set(template.fields):
            raise FileTemplateError(
                f"file template {template.template!r} serves several dataset types but names neither "
                "'{dataset_type}' nor '{id}': datasets of two types could get the same path"
            )
        return template.format(ref)

    def file_name(self, ref: DatasetRef) -> str:
        """The name (without extension) under which ``ref``'s file is handed to a user (DMS-MWBT-REQ-0078).

        Every way of retrieving a file (:meth:`Butler.retrieve_files`,
        :meth:`Butler.export_file`, ``nightshift butler retrieve``) names it
        this, whatever the storage (POSIX, S3). It is the path's last element
        when that alone identifies the dataset (the default template's does:
        type, data ID and run); otherwise the directories are folded in, with
        ``~`` for ``/`` (a character no data ID value can contain), so the
        name stays unique without the directory hierarchy.
        """
        template = self.get_template(ref.dataset_type)
        path = self.path(ref)
        last = template.template.replace("\\", "/").rsplit("/", 1)[-1]
        try:
            tail = FileTemplate(last)
            tail.check_unique(ref.dataset_type)
            specific = template is not self.default and template is not self._templates.get(
                ref.dataset_type.storage_class)
            if not specific and not {"dataset_type", "id"} & set(tail.fields):
                raise FileTemplateError("the name alone does not say the dataset type")
            if "run" in tail.fields:  # a run's own "/" would cut the name: only run_flat keeps it whole
                raise FileTemplateError("the name holds only part of the run")
        except FileTemplateError:
            return path.replace("/", "~")
        return path.rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, str]:
        """Active configuration (DMS-MWBT-REQ-0026)."""
        return {"default": self.default.template, **{k: v.template for k, v in sorted(self._templates.items())}}
