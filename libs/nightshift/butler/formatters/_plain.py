"""Formatters for plain data: JSON, YAML, NumPy ``.npy``, Avro, and FITS WCS/header files.

Each formatter imports its library (numpy, PyYAML, fastavro, astropy) inside its
methods, so loading this module for JSON costs nothing beyond the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from .._storage_class import StorageClass
from ._base import Formatter
from ._exceptions import FormatterError, UnsupportedComponentError

__all__ = [
    "AvroFormatter", "FitsHeaderFormatter", "FitsImageFormatter", "FitsWcsFormatter", "JsonFormatter",
    "NumpyFormatter", "YamlFormatter",
]


def _component_of(data: Any, component: str | None) -> Any:
    if component is None:
        return data
    if isinstance(data, Mapping) and component in data:
        return data[component]
    raise UnsupportedComponentError(f"no key {component!r} in the stored mapping")


class JsonFormatter(Formatter):
    """``dict``/``list`` of JSON-native values ↔ JSON; a top-level key is a component."""

    name: ClassVar[str] = "json"
    extension: ClassVar[str] = ".json"
    supported_options: ClassVar[frozenset[str]] = frozenset({"indent"})
    components_in_file: ClassVar[bool] = True
    reads: ClassVar[str] = "JSON"

    def write(self, obj: Any, path: Path) -> None:
        try:
            text = json.dumps(obj, indent=self.options.get("indent"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FormatterError(f"object is not JSON-serializable: {exc}") from exc
        path.write_text(text, encoding="utf-8")

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        return _component_of(json.loads(path.read_bytes()), component)


class YamlFormatter(Formatter):
    """``dict``/``list`` ↔ YAML (safe dump/load only)."""

    name: ClassVar[str] = "yaml"
    extension: ClassVar[str] = ".yaml"
    components_in_file: ClassVar[bool] = True
    reads: ClassVar[str] = "YAML"

    def write(self, obj: Any, path: Path) -> None:
        import yaml

        try:
            text = yaml.safe_dump(obj, sort_keys=False)
        except yaml.YAMLError as exc:
            raise FormatterError(f"object is not YAML-serializable: {exc}") from exc
        path.write_text(text, encoding="utf-8")

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        import yaml

        return _component_of(yaml.safe_load(path.read_text(encoding="utf-8")), component)

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        import yaml

        return (OSError, yaml.YAMLError)


class NumpyFormatter(Formatter):
    """``numpy.ndarray`` ↔ ``.npy``; ``bbox`` of a 2-d array is read through a memory map."""

    name: ClassVar[str] = "numpy"
    extension: ClassVar[str] = ".npy"
    read_parameters: ClassVar[frozenset[str]] = frozenset({"bbox"})
    reads: ClassVar[str] = "array"

    def write(self, obj: Any, path: Path) -> None:
        import numpy as np

        if not isinstance(obj, np.ndarray):
            raise FormatterError(f"numpy formatter writes ndarrays, not {type(obj).__name__}")
        if obj.dtype.hasobject:
            raise FormatterError("numpy formatter refuses object arrays (they would need pickle to read)")
        with open(path, "wb") as f:
            np.save(f, obj, allow_pickle=False)

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        import numpy as np

        box = parameters.get("bbox")
        if box is None:
            return np.load(path, allow_pickle=False)
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
        box.check_within(mm.shape)
        return np.array(mm[box.slices])


_AVRO_TYPES = {bool: "boolean", int: "long", float: "double", str: "string", bytes: "bytes"}


def _infer_avro_schema(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    fields: dict[str, set[str]] = {}
    for rec in records:
        for key, value in rec.items():
            t = "null" if value is None else _AVRO_TYPES.get(type(value))
            if t is None:
                raise FormatterError(f"cannot infer an Avro type for field {key!r} of type {type(value).__name__}")
            fields.setdefault(key, set()).add(t)
    out = []
    for key, types in fields.items():
        order = sorted(types, key=lambda t: (t != "null", t))
        out.append({"name": key, "type": order[0] if len(order) == 1 else order})
    return {"type": "record", "name": "Record", "namespace": "nightshift.butler", "fields": out}


class AvroFormatter(Formatter):
    """List of records (dicts) ↔ Avro object container file (fastavro).

    Options
    -------
    schema : mapping or str
        Avro schema (dict, or path to an ``.avsc`` file); inferred from the
        records if omitted.
    codec : str
        Container codec (``deflate`` default, ``null``, ``snappy`` ...).
    """

    name: ClassVar[str] = "avro"
    extension: ClassVar[str] = ".avro"
    supported_options: ClassVar[frozenset[str]] = frozenset({"schema", "codec"})
    reads: ClassVar[str] = "Avro records"

    def write(self, obj: Any, path: Path) -> None:
        import fastavro

        if not isinstance(obj, list) or not all(isinstance(r, Mapping) for r in obj):
            raise FormatterError("avro formatter writes a list of records (mappings)")
        schema = self.options.get("schema")
        if isinstance(schema, str):
            schema = json.loads(Path(schema).read_text())
        if schema is None:
            schema = _infer_avro_schema(obj)
        try:
            parsed = fastavro.parse_schema(schema)
            with open(path, "wb") as f:
                fastavro.writer(f, parsed, obj, codec=self.options.get("codec", "deflate"))
        except (ValueError, TypeError, fastavro.validation.ValidationError) as exc:
            raise FormatterError(f"cannot write records as Avro: {exc}") from exc

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        import fastavro

        with open(path, "rb") as f:
            return list(fastavro.reader(f))


class FitsWcsFormatter(Formatter):
    """``astropy.wcs.WCS`` ↔ a FITS file of one header (e.g. a WCS stored separately, REQ-0051)."""

    name: ClassVar[str] = "fits_wcs"
    extension: ClassVar[str] = ".fits"
    reads: ClassVar[str] = "WCS"

    def write(self, obj: Any, path: Path) -> None:
        from astropy.io import fits
        from astropy.wcs import WCS

        if not isinstance(obj, WCS):
            raise FormatterError(f"fits_wcs writes astropy WCS objects, not {type(obj).__name__}")
        fits.PrimaryHDU(header=obj.to_header()).writeto(path)

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        from astropy.io import fits

        from ._fits_exposure import _wcs_from_header

        return _wcs_from_header(fits.getheader(path, 0))

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        return (OSError,)


class FitsHeaderFormatter(Formatter):
    """``astropy.io.fits.Header`` ↔ a header-only FITS file (e.g. header corrections, REQ-0035)."""

    name: ClassVar[str] = "fits_header"
    extension: ClassVar[str] = ".fits"
    components_in_file: ClassVar[bool] = True
    reads: ClassVar[str] = "header"

    def write(self, obj: Any, path: Path) -> None:
        from astropy.io import fits

        if not isinstance(obj, fits.Header):
            raise FormatterError(f"fits_header writes astropy Header objects, not {type(obj).__name__}")
        try:
            fits.PrimaryHDU(header=obj.copy()).writeto(path)
        except (ValueError, TypeError) as exc:
            raise FormatterError(f"cannot write header: {exc}") from exc

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        from astropy.io import fits

        header = fits.getheader(path, 0)
        for key in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND"):
            header.remove(key, ignore_missing=True)
        if component is not None:
            if component not in header:
                raise UnsupportedComponentError(f"header has no keyword {component!r}")
            return header[component]
        return header

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        return (OSError,)





class FitsImageFormatter(Formatter):
    """2-d ``numpy.ndarray`` ↔ a single-image FITS file (DMS-MWBT-REQ-0061).

    ``bbox`` reads only the rows it needs through a memory map.

    Options
    -------
    compression : str or None
        Tile compression (``RICE_1``, ``GZIP_1``, ``GZIP_2``, ``HCOMPRESS_1``).
    quantize_level : float
        For floating-point data with compression.
    """

    name: ClassVar[str] = "fits_image"
    extension: ClassVar[str] = ".fits"
    supported_options: ClassVar[frozenset[str]] = frozenset({"compression", "quantize_level"})
    read_parameters: ClassVar[frozenset[str]] = frozenset({"bbox"})
    reads: ClassVar[str] = "image"
    reads_streams: ClassVar[bool] = True

    def write(self, obj: Any, path: Path) -> None:
        import numpy as np
        from astropy.io import fits

        if not isinstance(obj, np.ndarray) or obj.ndim != 2:
            raise FormatterError("fits_image writes 2-d numpy arrays")
        comp = self.options.get("compression")
        try:
            if comp:
                kw = {"quantize_level": self.options["quantize_level"]} if "quantize_level" in self.options else {}
                hdul = fits.HDUList(
                    [fits.PrimaryHDU(), fits.CompImageHDU(obj, name="IMAGE", compression_type=comp, **kw)]
                )
            else:
                hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(obj, name="IMAGE")])
            hdul.writeto(path)
        except (ValueError, TypeError, OSError) as exc:
            raise FormatterError(f"cannot write image as FITS: {exc}") from exc

    def _read(self, path: Path | BinaryIO, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        """A path, or a seekable stream (remote byte ranges: the header and the box's rows only)."""
        from ._fits_exposure import FitsExposureFormatter

        fmt = FitsExposureFormatter()
        if isinstance(path, Path):
            return fmt.read(path, storage_class, "image", parameters)
        return fmt.read_stream(path, storage_class, "image", parameters)
