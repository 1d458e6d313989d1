"""The formatter interface: write one in-memory object to a file and read it back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from .._storage_class import StorageClass
from ._exceptions import FormatterError, UnsupportedComponentError, UnsupportedParameterError

if TYPE_CHECKING:
    from .._file_provenance import FileProvenance

__all__ = ["Formatter"]


class Formatter(ABC):
    """Reads and writes one file format.

    A formatter works on local files only; datastores stage remote files
    locally (through the cache) before calling :meth:`read`.

    Parameters
    ----------
    options : mapping, optional
        Writer/reader options from configuration (DMS-MWBT-REQ-0060), e.g.
        ``{"compression": "RICE_1"}`` for FITS; unknown keys are an error.

    Attributes
    ----------
    name : str
        The name this formatter is registered and recorded under.
    extension : str
        File extension including the dot (``.fits``).
    supported_options : frozenset of str
        Keys accepted in ``options``.
    read_parameters : frozenset of str
        Parameters :meth:`read` applies itself while reading (e.g. ``bbox``
        via a memory map); other parameters are applied in memory by the
        storage class delegate after a full read.
    read_components : frozenset of str
        Components :meth:`read` can read without reading the rest.
    components_in_file : bool
        Components are names found in the file itself (mapping keys, table
        columns, header keywords): :meth:`_read` looks them up.
    reads : str
        What the file holds, for error messages (``"JSON"``, ``"Exposure"``).
    reads_streams : bool
        :meth:`read_stream` reads components and subsets from a seekable
        file object, touching only the bytes it needs (remote byte ranges):
        the format's :meth:`_read` then accepts a stream as well as a path.
    """

    name: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    supported_options: ClassVar[frozenset[str]] = frozenset()
    read_parameters: ClassVar[frozenset[str]] = frozenset()
    read_components: ClassVar[frozenset[str]] = frozenset()
    components_in_file: ClassVar[bool] = False
    reads: ClassVar[str] = "dataset"
    reads_streams: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = set(options) - self.supported_options
        if unknown:
            raise UnsupportedParameterError(
                f"formatter {self.name!r} does not understand option(s) {sorted(unknown)}; "
                f"it accepts {sorted(self.supported_options)}"
            )
        self.options: dict[str, Any] = options

    @abstractmethod
    def write(self, obj: Any, path: Path) -> None:
        """Write ``obj`` to the (new) local file ``path``.

        Raises
        ------
        FormatterError
            If the object cannot be written in this format.
        """

    def write_with_provenance(self, obj: Any, path: Path, provenance: FileProvenance) -> bool:
        """Write ``obj`` with its provenance inside the file, where the format has a place for it.

        The default writes, then appends a ``PROVENANCE`` HDU (FITS) or sets
        a root attribute (HDF5). Returns False when the format holds no
        metadata; the datastore then writes a JSON sidecar (DMS-MWBT-REQ-0096).
        """
        from .._file_provenance import embed_after_write

        self.write(obj, path)
        return embed_after_write(path, provenance)

    def read(
        self,
        path: Path,
        storage_class: StorageClass,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        """Read the dataset (or one component, or a subset) from ``path``.

        A template method (as daf_butler's ``FormatterV2`` and kedro's
        ``AbstractDataset._load``): the checks every format shares run here,
        then :meth:`_read` reads; an error of the reading library
        (:meth:`_read_errors`) becomes a :class:`FormatterError` naming the
        file, while the formatter's own errors pass through.

        Parameters
        ----------
        path : pathlib.Path
            Local file.
        storage_class : StorageClass
            The storage class to return (of the component when one is given).
        component : str, optional
            Must be in :attr:`read_components` unless :attr:`components_in_file`
            (then :meth:`_read` looks it up in what it read).
        parameters : mapping, optional
            Only keys in :attr:`read_parameters`. ``bbox`` arrives as a
            :class:`Box`, ``columns`` as a list of column names.

        Raises
        ------
        UnsupportedParameterError
            A parameter this formatter cannot apply, or an invalid value.
        UnsupportedComponentError
            A component this formatter cannot read.
        FormatterError
            The file cannot be read.
        """
        return self._checked_read(path, storage_class, component, parameters)

    def _checked_read(self, source: Path | BinaryIO, storage_class: StorageClass, component: str | None,
                      parameters: Mapping[str, Any] | None) -> Any:
        """The template shared by :meth:`read` and :meth:`read_stream`: check, :meth:`_read`, wrap errors."""
        params = self._check_read(component, parameters)
        try:
            # a stream only reaches formatters that declare reads_streams; their _read takes one
            return self._read(source, storage_class, component, params)  # type: ignore[arg-type]  # see line above
        except FormatterError:
            raise
        except self._read_errors() as exc:
            part = f" {component}" if component else ""
            where = source if isinstance(source, Path) else getattr(source, "name", source)
            raise FormatterError(f"cannot read {self.reads}{part} from {where}: {exc}") from exc

    def _check_read(self, component: str | None, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        """The shared preamble of :meth:`read`: parameters known and valid, component readable."""
        params = dict(parameters or {})
        unknown = sorted(set(params) - self.read_parameters)
        if unknown:
            raise UnsupportedParameterError(f"{self.name} cannot apply parameter(s) {unknown}")
        if "bbox" in params:
            from ._exposure import Box

            try:
                params["bbox"] = Box.coerce(params["bbox"])
            except (TypeError, ValueError) as exc:
                raise UnsupportedParameterError(f"{self.name}: invalid bbox: {exc}") from exc
        columns = params.get("columns")
        if columns is not None:
            if component is not None:
                raise UnsupportedParameterError("give either a column component or 'columns', not both")
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise UnsupportedParameterError(f"'columns' must be a list of column names, not {columns!r}")
            params["columns"] = list(columns)
        if component is not None and not self.components_in_file and component not in self.read_components:
            has = f"its components are {sorted(self.read_components)}" if self.read_components else "it has none"
            raise UnsupportedComponentError(f"{self.reads} has no component {component!r}: {has}")
        return params

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        """The reading library's exceptions that :meth:`read` turns into :class:`FormatterError`."""
        return (OSError, ValueError)

    @abstractmethod
    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        """Read ``path`` after :meth:`read` checked ``component`` and ``parameters``."""

    def read_stream(
        self,
        stream: BinaryIO,
        storage_class: StorageClass,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        """Like :meth:`read`, from a seekable binary file object (only when :attr:`reads_streams`).

        The same template as :meth:`read`: the shared checks, then the
        format's :meth:`_read` given the stream instead of a path.

        Raises
        ------
        NotImplementedError
            The formatter reads local files only.
        """
        if not self.reads_streams:
            raise NotImplementedError(f"formatter {self.name!r} reads local files only")
        return self._checked_read(stream, storage_class, component, parameters)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"
