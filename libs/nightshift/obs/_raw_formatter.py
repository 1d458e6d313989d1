"""Reading an ingested raw as an :class:`~nightshift.butler.Exposure` with up-to-date metadata.

Raw ingest records the formatter ``nightshift.obs:RawFormatter`` in each raw's
datastore record, with two options: the HDU holding the raw's pixels and the
header corrections applied at ingest. Every read applies those corrections
again, so the in-memory object (``butler.get("raw", ...)`` or only its
``metadata`` component) carries the corrected values although the file is
never modified (DMS-MWBT-REQ-0049, DMS-MWBT-REQ-0050).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits

from ..butler.formatters import Formatter, FormatterError
from ..butler.formatters._exposure import Exposure
from ._sky import celestial_wcs

__all__ = ["RawFormatter"]

_STRUCTURAL = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
               "BZERO", "BSCALE")


class RawFormatter(Formatter):
    """Raw FITS (one detector per HDU) -> Exposure; read-only.

    Options
    -------
    hdu : int
        HDU of the pixels (0 for single-HDU raws).
    corrections : mapping
        Keyword -> ``{"old", "new", "source"}`` recorded at ingest; ``new`` is applied on every read.
    digest, source : str
        Header digest and origin of the file (ingest's identity check; unused when reading).
    """

    name: ClassVar[str] = "nightshift.obs:RawFormatter"
    extension: ClassVar[str] = ".fits"
    supported_options: ClassVar[frozenset[str]] = frozenset({"hdu", "corrections", "digest", "source"})
    read_components: ClassVar[frozenset[str]] = frozenset({"metadata", "wcs", "image"})
    reads: ClassVar[str] = "raw"

    def write(self, obj: Any, path: Path) -> None:
        raise FormatterError("raws are ingested, never written: use nightshift.obs.ingest_raws")

    def _metadata(self, hdul: fits.HDUList) -> fits.Header:
        hdu = int(self.options.get("hdu", 0))
        header = hdul[0].header.copy()
        if hdu:
            for card in hdul[hdu].header.cards:
                if card.keyword not in ("COMMENT", "HISTORY", ""):
                    header[card.keyword] = (card.value, card.comment)
        for key in _STRUCTURAL:
            header.remove(key, ignore_missing=True, remove_all=True)
        for key, change in (self.options.get("corrections") or {}).items():
            header[key] = change["new"]
        header["NSCORR"] = (len(self.options.get("corrections") or {}), "header corrections applied on read")
        return header

    def _read(self, path: Path, storage_class: Any, component: str | None, parameters: dict[str, Any]) -> Any:
        hdu = int(self.options.get("hdu", 0))
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            metadata = self._metadata(hdul)
            wcs = celestial_wcs(metadata)
            if component == "metadata":
                return metadata
            if component == "wcs":
                return wcs
            image = np.asarray(hdul[hdu].data, dtype=np.float32)
        if component == "image":
            return image
        return Exposure(image=image, wcs=wcs, metadata=metadata)

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        return (OSError, IndexError, KeyError, TypeError, ValueError)
