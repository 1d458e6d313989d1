"""The formatter interface: write one in-memory object to a file and read it back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from .._storage_class import StorageClass
from ._exceptions import UnsupportedParameterError

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
    reads_streams : bool
        :meth:`read_stream` reads components and subsets from a seekable
        file object, touching only the bytes it needs (remote byte ranges).
    """

    name: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    supported_options: ClassVar[frozenset[str]] = frozenset()
    read_parameters: ClassVar[frozenset[str]] = frozenset()
    read_components: ClassVar[frozenset[str]] = frozenset()
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

    @abstractmethod
    def read(
        self,
        path: Path,
        storage_class: StorageClass,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        """Read the dataset (or one component, or a subset) from ``path``.

        Parameters
        ----------
        path : pathlib.Path
            Local file.
        storage_class : StorageClass
            The storage class to return (of the component when one is given).
        component : str, optional
            Must be in :attr:`read_components` (others are extracted by the caller).
        parameters : mapping, optional
            Only keys in :attr:`read_parameters`.
        """

    def read_stream(
        self,
        stream: BinaryIO,
        storage_class: StorageClass,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        """Like :meth:`read`, from a seekable binary file object (only when :attr:`reads_streams`).

        Raises
        ------
        NotImplementedError
            The formatter reads local files only.
        """
        raise NotImplementedError(f"formatter {self.name!r} reads local files only")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"
