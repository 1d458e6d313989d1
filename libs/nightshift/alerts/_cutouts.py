"""FITS cutouts with the content of Rubin's (image, variance, mask, PSF kernel, local TAN WCS, ROTPA).

Rubin writes each cutout through ``astropy.nddata.CCDData.write``, which costs
milliseconds. :class:`CutoutWriter` writes the same FITS file from header
templates (built once per shape with astropy itself) in which only the
per-cutout cards are rewritten, followed by the raw big-endian pixel bytes.
The result reads back with ``CCDData.read``; tests/alerts/test_cutouts.py
checks it byte for byte against ``CCDData.write``.

Layout (the HDUs ``CCDData.write`` produces):

- primary HDU: the image (``BUNIT = 'nJy'``), ``ROTPA`` and the local TAN WCS
  (``CRPIX``, ``PC``, ``CDELT = 1``, ``CRVAL``; ICRS);
- ``MASK``: 1 where the source's mask has any bit set (uint8);
- ``UNCERT``: the variance, ``UTYPE = 'VarianceUncertainty'``;
- ``PSFIMAGE``: the PSF kernel image at the source.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._errors import CutoutError

__all__ = ["CutoutWriter", "LocalWcs", "write_cutout"]

_BLOCK = 2880
_WCS_KEYS = ("CRPIX1", "CRPIX2", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CRVAL1", "CRVAL2", "LATPOLE")


@dataclass(frozen=True)
class LocalWcs:
    """A local TAN projection around a source.

    Parameters
    ----------
    ra, dec : float
        Sky position (degrees, ICRS) of the reference pixel.
    crpix1, crpix2 : float
        Reference pixel, FITS 1-based (the cutout centre: ``(n + 1) / 2``).
    cd : 2x2 sequence of float
        Pixel-to-intermediate-world matrix, degrees per pixel.
    """

    ra: float
    dec: float
    crpix1: float
    crpix2: float
    cd: tuple[tuple[float, float], tuple[float, float]]

    @classmethod
    def around(cls, ra: float, dec: float, size: int, pixel_scale: float = 0.2, rotpa: float = 0.0) -> LocalWcs:
        """North-up-east-left WCS rotated by ``rotpa`` degrees, ``pixel_scale`` arcsec, centred on (ra, dec)."""
        s = pixel_scale / 3600.0
        c, n = math.cos(math.radians(rotpa)), math.sin(math.radians(rotpa))
        centre = (size + 1) / 2.0
        return cls(ra, dec, centre, centre, ((-s * c, s * n), (s * n, s * c)))

    def astropy(self) -> Any:
        """The same WCS as an ``astropy.wcs.WCS``."""
        from astropy.wcs import WCS

        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [self.ra, self.dec]
        w.wcs.crpix = [self.crpix1, self.crpix2]
        w.wcs.cd = np.asarray(self.cd, dtype=np.float64)
        return w


def _wcslib_float(v: float) -> str:
    """A real value the way wcslib writes it in a header (14 significant digits, always a '.' or exponent)."""
    s = f"{v:.14G}"
    if "." not in s and "E" not in s and "N" not in s and "I" not in s:
        s += ".0"
    return s


def _astropy_float(v: float) -> str:
    """A real value the way astropy.io.fits writes a card it formats (``Card._format_float``)."""
    s = str(v).replace("e", "E")
    if "." not in s and "E" not in s and "n" not in s and "i" not in s:
        s += ".0"
    if len(s) > 20:
        idx = s.find("E")
        s = s[:20] if idx < 0 else s[: 20 - (len(s) - idx)] + s[idx:]
    return s


@dataclass
class _Template:
    primary: str  # the primary header with a %20s slot for each WCS value, then one for ROTPA
    mask: bytes  # the MASK header
    uncert: bytes
    psf: bytes
    pads: tuple[bytes, bytes, bytes, bytes]  # zero padding after each HDU's data


class CutoutWriter:
    """Writes cutouts from cached header templates plus raw big-endian bytes.

    Templates are keyed by (image shape, PSF shape, PSF dtype) and built with
    astropy on first use; up to ``max_templates`` are kept (least recently used
    dropped).
    """

    def __init__(self, max_templates: int = 256) -> None:
        self._templates: OrderedDict[tuple[Any, ...], _Template] = OrderedDict()
        self._max = max_templates

    def _template(self, shape: tuple[int, int], psf_shape: tuple[int, int], psf_dtype: np.dtype[Any]) -> _Template:
        key = (shape, psf_shape, psf_dtype.str)
        t = self._templates.get(key)
        if t is not None:
            self._templates.move_to_end(key)
            return t
        import astropy.units as u
        from astropy.nddata import CCDData, VarianceUncertainty

        image = np.zeros(shape, np.float32)
        wcs = LocalWcs.around(1.0, 1.0, shape[0], 0.2, 30.0)  # every PC card present
        ccd = CCDData(image, unit=u.nJy, uncertainty=VarianceUncertainty(image), mask=np.zeros(shape, bool),
                      wcs=wcs.astropy(), psf=np.zeros(psf_shape, psf_dtype))
        ccd.header["ROTPA"] = 0.0
        hdus = ccd.to_hdu()
        heads = [h.header.tostring().encode("ascii") for h in hdus]
        names = [h.name for h in hdus]
        if names != ["PRIMARY", "MASK", "UNCERT", "PSFIMAGE"]:  # pragma: no cover - astropy changed its layout
            raise CutoutError(f"astropy's CCDData writes HDUs {names}; nightshift's templates expect 4")
        text = heads[0].decode("ascii").replace("%", "%%")
        cards = [text[pos : pos + 80] for pos in range(0, len(text), 80)]
        slots = {word: i for i, c in enumerate(cards) if (word := c[:8].strip()) in _WCS_KEYS or word == "ROTPA"}
        missing = set(_WCS_KEYS) - set(slots)
        if missing or "ROTPA" not in slots:  # pragma: no cover - depends on astropy/wcslib
            raise CutoutError(f"astropy's WCS header lacks {sorted(missing)}")
        order = [*_WCS_KEYS, "ROTPA"]
        # The template's values become %20s slots, filled in _WCS_KEYS order, then ROTPA.
        rank = {slots[k]: r for r, k in enumerate(order)}
        pieces = []
        for i, c in enumerate(cards):
            if i in rank:
                pieces.append(c[:10] + f"%(v{rank[i]})20s" + c[30:])
            else:
                pieces.append(c)
        fmt = "".join(pieces)
        sizes = [image.nbytes, shape[0] * shape[1], image.nbytes, int(np.prod(psf_shape)) * psf_dtype.itemsize]
        p0, p1, p2, p3 = (b"\x00" * (-n % _BLOCK) for n in sizes)
        t = _Template(fmt, heads[1], heads[2], heads[3], (p0, p1, p2, p3))
        self._templates[key] = t
        if len(self._templates) > self._max:
            self._templates.popitem(last=False)
        return t

    def write(
        self,
        image: ArrayLike,
        variance: ArrayLike,
        mask: ArrayLike,
        psf: ArrayLike,
        wcs: LocalWcs,
        rotpa: float = 0.0,
    ) -> bytes:
        """One cutout as FITS bytes.

        Parameters
        ----------
        image, variance : 2-d arrays
            Pixel values (nJy) and their variance; written as big-endian float32.
        mask : 2-d array
            Mask bits (any non-zero value marks the pixel, as ``CCDData``'s mask).
        psf : 2-d array
            PSF kernel image at the source (its dtype is kept: float32 or float64).
        wcs : LocalWcs
            Local TAN WCS of the cutout.
        rotpa : float
            Position angle of the focal plane, degrees (``ROTPA`` card).

        Raises
        ------
        CutoutError
            The planes do not share one 2-d shape, or the PSF is not a 2-d float array.
        """
        img = np.asarray(image)
        var = np.asarray(variance)
        msk = np.asarray(mask)
        kern = np.asarray(psf)
        if img.ndim != 2 or var.shape != img.shape or msk.shape != img.shape:
            raise CutoutError(
                f"image {img.shape}, variance {var.shape} and mask {msk.shape} must be 2-d arrays of one shape"
            )
        if kern.ndim != 2 or kern.dtype.kind != "f":
            raise CutoutError(f"the PSF kernel must be a 2-d float array, got {kern.dtype} {kern.shape}")
        kern_be = kern.astype(kern.dtype.newbyteorder(">"), copy=False)
        t = self._template(img.shape, kern.shape, kern_be.dtype.newbyteorder("="))
        (a, b), (c, d) = wcs.cd
        f = _wcslib_float
        primary = t.primary % {
            "v0": f(wcs.crpix1), "v1": f(wcs.crpix2), "v2": f(a), "v3": f(b), "v4": f(c), "v5": f(d),
            "v6": f(wcs.ra), "v7": f(wcs.dec), "v8": f(wcs.dec), "v9": _astropy_float(float(rotpa)),
        }
        msk_b = msk.tobytes() if msk.dtype == np.bool_ else (msk != 0).tobytes()
        pads = t.pads
        return b"".join((
            primary.encode("ascii"), img.astype(">f4", copy=False).tobytes(), pads[0],
            t.mask, msk_b, pads[1],
            t.uncert, var.astype(">f4", copy=False).tobytes(), pads[2],
            t.psf, kern_be.tobytes(), pads[3],
        ))


_DEFAULT = CutoutWriter()


def write_cutout(
    image: ArrayLike,
    variance: ArrayLike,
    mask: ArrayLike,
    psf: ArrayLike,
    wcs: LocalWcs,
    rotpa: float = 0.0,
) -> bytes:
    """One cutout as FITS bytes through a shared :class:`CutoutWriter` (see there)."""
    return _DEFAULT.write(image, variance, mask, psf, wcs, rotpa)


