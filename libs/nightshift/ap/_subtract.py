"""Image differencing: Alard–Lupton PSF matching with a spatially varying kernel.

The template (already warped to the science WCS and scaled to science
counts) is convolved with a kernel ``K(x, y) = Σ_b a_b(x, y) B_b`` so it
matches the science PSF, then subtracted:

* Basis ``B_b``: Gaussians of widths ``basis_sigma_factors × σ_match``
  (``σ_match² = σ_sci² − σ_tmpl²``) times monomials ``(x/σ)^p (y/σ)^q`` up
  to ``basis_degrees``; the first basis sums to 1, the others to 0, so the
  kernel sum (the photometric scaling) is the single constant ``a_0``.
* Spatial variation: every other coefficient is a polynomial of degree
  ``spatial_degree`` in the detector position; a differential background
  polynomial of degree ``background_degree`` is fitted jointly.
* Fit: linear least squares over stamps around bright, clean stars
  (convolutions of the stamps with the separable basis are vectorised
  with ``sliding_window_view``), weighted by the science variance, with
  iterative rejection of stamps whose χ²/pixel is an outlier (variables,
  neighbours, cosmic-ray residues).
* Application: the kernel is evaluated at the centre of each of
  ``n_patches × n_patches`` patches and each patch convolved by FFT, a piecewise-constant approximation of the smooth
  spatial variation.
* Planes: ``var_diff = var_sci + var_tmpl ⊛ K²`` (the template variance is
  smooth, so ``⊛ K² ≈ Σ K² ×``), masks are ORed, the template mask grown
  by the kernel half-width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy import ndimage, signal

from ..butler.formatters import Exposure
from ._exceptions import ApInputError, PsfMatchError
from ._masks import MaskPlane
from ._psf import PsfModel
from ._warp import warp_exposure

__all__ = ["SubtractConfig", "SubtractResult", "prepare_template", "psf_matching_basis", "subtract_images"]

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class SubtractConfig:
    """Settings of :func:`subtract_images`.

    Attributes
    ----------
    basis_sigma_factors : tuple of float
        Widths of the basis Gaussians in units of the matching sigma.
    basis_degrees : tuple of int
        Monomial degree of each Gaussian (Rubin's default ``(4, 2, 2)``).
    spatial_degree : int
        Polynomial degree of the kernel's spatial variation.
    background_degree : int
        Polynomial degree of the fitted differential background.
    kernel_half : int or None
        Kernel half-size (default ``ceil(3 × the largest basis sigma)``, 5..15).
    max_stamps : int
        Brightest stars used at most.
    min_stamps : int
        Fewer stamps: a plain Gaussian kernel from the two PSFs is used instead (and reported).
    n_patches : int
        Patches per axis over which the spatially varying kernel is held constant.
    clip_nsigma : float
        Stamp rejection threshold on χ²/pixel (in robust sigmas above the median).
    """

    basis_sigma_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    basis_degrees: tuple[int, ...] = (4, 2, 2)
    spatial_degree: int = 1
    background_degree: int = 1
    kernel_half: int | None = None
    max_stamps: int = 150
    min_stamps: int = 10
    n_patches: int = 4
    clip_nsigma: float = 3.0


@dataclass
class SubtractResult:
    """Output of :func:`subtract_images`.

    Attributes
    ----------
    difference : Exposure
        ``science − K ⊛ template − background``, science WCS and PSF, propagated variance and mask.
    matched_template : Exposure
        The PSF-matched template (for alert cutouts).
    kernel_sum : float
        The photometric scaling of the kernel.
    diagnostics : dict
        Stamps used and rejected, residual statistics, fallback used, empty overlap.
    """

    difference: Exposure
    matched_template: Exposure
    kernel_sum: float
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Basis:
    sigma: float
    p: int
    q: int


def _poly_terms(degree: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]


def _poly_eval(degree: int, u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.stack([u**i * v**j for i, j in _poly_terms(degree)], axis=-1)


def psf_matching_basis(sigma_match: float, config: SubtractConfig) -> tuple[list[_Basis], int]:
    """The (Gaussian width, x power, y power) list of the Alard–Lupton basis and the kernel half-size."""
    sig = [max(0.3, f * sigma_match) for f in config.basis_sigma_factors]
    if len(sig) != len(config.basis_degrees):
        raise ApInputError("basis_sigma_factors and basis_degrees must have the same length")
    half = config.kernel_half or int(np.clip(np.ceil(3 * max(sig)), 5, 15))
    basis = [_Basis(s, p, q) for s, d in zip(sig, config.basis_degrees, strict=True) for p in range(d + 1)
             for q in range(d + 1 - p)]
    return basis, half


def _one_d(basis: list[_Basis], half: int) -> tuple[dict[tuple[float, int], NDArray[np.float64]], float]:
    """1-d factors ``g_σ(t) (t/σ)^p`` of the separable basis (unnormalised) and the 2-d sum of basis 0."""
    t = np.arange(-half, half + 1, dtype=np.float64)
    out: dict[tuple[float, int], NDArray[np.float64]] = {}
    for b in basis:
        for power in (b.p, b.q):
            out.setdefault((b.sigma, power), np.exp(-0.5 * (t / b.sigma) ** 2) * (t / b.sigma) ** power)
    b0 = basis[0]
    s0 = float(out[(b0.sigma, b0.p)].sum() * out[(b0.sigma, b0.q)].sum())
    return out, s0


def _kernel_images(basis: list[_Basis], half: int) -> NDArray[np.float64]:
    """2-d basis images, basis 0 normalised to sum 1, the others made zero-sum (``B_b − ΣB_b · B_0``)."""
    one, s0 = _one_d(basis, half)
    imgs = np.stack([np.outer(one[(b.sigma, b.q)], one[(b.sigma, b.p)]) for b in basis])
    imgs[0] /= s0
    sums = imgs[1:].sum(axis=(1, 2))
    imgs[1:] -= sums[:, None, None] * imgs[0][None]
    return imgs


def _convolve_stamps(tstamps: NDArray[np.float64], basis: list[_Basis], half: int) -> NDArray[np.float64]:
    """Correlate each template stamp with each basis image ('valid'): ``(n_stamps, n_basis, h, w)``."""
    one, s0 = _one_d(basis, half)
    keys = list(one)
    k1 = np.stack([one[k] for k in keys])  # (n1, L)
    win_x = sliding_window_view(tstamps, 2 * half + 1, axis=2)  # (n, H, W', L)
    cx = np.einsum("nhwl,kl->nkhw", win_x, k1, optimize=True)  # (n, n1, H, W')
    out = []
    idx = {k: i for i, k in enumerate(keys)}
    for b in basis:
        a = cx[:, idx[(b.sigma, b.p)]]  # (n, H, W')
        win_y = sliding_window_view(a, 2 * half + 1, axis=1)  # (n, H', W', L)
        out.append(np.einsum("nhwl,l->nhw", win_y, one[(b.sigma, b.q)], optimize=True))
    conv = np.stack(out, axis=1)  # (n, nb, h, w)
    conv[:, 0] /= s0
    sums = np.array([np.outer(one[(b.sigma, b.q)], one[(b.sigma, b.p)]).sum() for b in basis[1:]])
    conv[:, 1:] -= sums[None, :, None, None] * conv[:, :1]
    return conv


def _select_stamps(science: Exposure, template: Exposure, x: NDArray[np.float64], y: NDArray[np.float64],
                   rank: NDArray[np.float64], half_total: int, max_stamps: int) -> NDArray[np.intp]:
    ny, nx = science.image.shape
    ix, iy = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
    ok = (ix >= half_total) & (iy >= half_total) & (ix < nx - half_total) & (iy < ny - half_total)
    bad = ((np.asarray(science.mask) | np.asarray(template.mask)) & int(MaskPlane.unusable())) != 0
    # isolation: no other candidate within the stamp
    if x.size > 1:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([x, y]))
        counts = np.array([len(c) for c in tree.query_ball_point(np.column_stack([x, y]), r=half_total)])
        ok &= counts <= 1
    chosen: list[int] = []
    for i in np.argsort(-rank):
        if not ok[i]:
            continue
        win = (slice(iy[i] - half_total, iy[i] + half_total + 1), slice(ix[i] - half_total, ix[i] + half_total + 1))
        if bad[win].any():
            continue
        chosen.append(int(i))
        if len(chosen) >= max_stamps:
            break
    return np.asarray(chosen, np.intp)


def subtract_images(
    science: Exposure,
    template: Exposure,
    science_psf: PsfModel,
    template_psf: PsfModel,
    star_x: NDArray[np.floating],
    star_y: NDArray[np.floating],
    star_flux: NDArray[np.floating],
    config: SubtractConfig | None = None,
) -> SubtractResult:
    """PSF-match ``template`` to ``science`` (Alard–Lupton, spatially varying) and subtract.

    Parameters
    ----------
    science : Exposure
        Calibrated, background-subtracted science exposure.
    template : Exposure
        Template already warped to the science pixel grid and scaled to science counts.
    science_psf, template_psf : PsfModel
        The two PSFs (their widths set the basis).
    star_x, star_y, star_flux : numpy.ndarray
        Candidate kernel stars on the science image (brightest used first).
    config : SubtractConfig, optional
        Settings.

    Returns
    -------
    SubtractResult
        The difference image and diagnostics. With no template overlap the
        difference is all ``NO_DATA`` (``diagnostics["empty"]``), not an error.

    Raises
    ------
    ApInputError
        If the two exposures have different shapes.
    PsfMatchError
        If the kernel fit is singular.
    """
    cfg = config or SubtractConfig()
    if science.image.shape != template.image.shape:
        raise ApInputError(f"science {science.image.shape} and warped template {template.image.shape} differ in "
                           "shape: warp the template to the science WCS first")
    ny, nx = science.image.shape
    sci = np.asarray(science.image, np.float32)
    tmp = np.asarray(template.image, np.float32)
    smask = np.asarray(science.mask)
    tmask = np.asarray(template.mask)
    nodata_t = (tmask & int(MaskPlane.NO_DATA)) != 0
    diag: dict[str, Any] = {"template_coverage": float(1 - nodata_t.mean())}
    s_sci, s_tmp = science_psf.sigma, template_psf.sigma
    sigma_match = float(np.sqrt(max(s_sci**2 - s_tmp**2, 0.25)))
    basis, kh = psf_matching_basis(sigma_match, cfg)
    diag.update(sigma_science=s_sci, sigma_template=s_tmp, sigma_match=sigma_match, kernel_half=kh,
                n_basis=len(basis))
    if nodata_t.all():
        diag["empty"] = True
        empty = np.zeros_like(sci)
        mask = (smask | int(MaskPlane.NO_DATA)).astype(np.int32)
        var = np.full_like(sci, np.inf)
        diff = Exposure(image=empty, mask=mask, variance=var, wcs=science.wcs, psf=science.psf,
                        metadata=science.metadata.copy())
        return SubtractResult(diff, Exposure(image=empty.copy(), mask=mask.copy(), variance=var.copy(),
                                             wcs=science.wcs), 0.0, diag)
    rs = max(6, int(np.ceil(3.5 * s_sci)))
    x = np.asarray(star_x, np.float64)
    y = np.asarray(star_y, np.float64)
    chosen = _select_stamps(science, template, x, y, np.asarray(star_flux, np.float64), rs + kh + 1,
                            cfg.max_stamps)
    diag["n_stamp_candidates"] = int(chosen.size)
    sdeg, bdeg = cfg.spatial_degree, cfg.background_degree
    n_sp = len(_poly_terms(sdeg))
    n_bg = len(_poly_terms(bdeg))
    kimgs = _kernel_images(basis, kh)

    def norm_uv(px: NDArray[np.float64], py: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        return (px - (nx - 1) / 2) / ((nx - 1) / 2), (py - (ny - 1) / 2) / ((ny - 1) / 2)

    if chosen.size >= cfg.min_stamps:
        ix, iy = np.round(x[chosen]).astype(np.int64), np.round(y[chosen]).astype(np.int64)
        from ._measure import stamps as cut

        tst, _ = cut(tmp, ix, iy, rs + kh)
        sst, _ = cut(sci, ix, iy, rs)
        vst, _ = cut(np.asarray(science.variance, np.float32), ix, iy, rs, fill=np.inf)
        conv = _convolve_stamps(tst.astype(np.float64), basis, kh)  # (n, nb, h, w)
        u, v = norm_uv(ix.astype(np.float64), iy.astype(np.float64))
        psp = _poly_eval(sdeg, u, v)  # (n, n_sp)
        pbg = _poly_eval(bdeg, u, v)  # (n, n_bg)
        n, nb = conv.shape[:2]
        npix = conv.shape[2] * conv.shape[3]
        cols = [conv[:, 0].reshape(n, npix)]
        for b in range(1, nb):
            cb = conv[:, b].reshape(n, npix)
            cols.extend(cb * psp[:, t:t + 1] for t in range(n_sp))
        cols.extend(np.broadcast_to(pbg[:, t:t + 1], (n, npix)) for t in range(n_bg))
        design = np.stack(cols, axis=-1)  # (n, npix, npar)
        rhs = sst.reshape(n, npix).astype(np.float64)
        w = 1.0 / np.sqrt(np.clip(vst.reshape(n, npix).astype(np.float64), 1e-6, None))
        use = np.ones(n, bool)
        coef: NDArray[np.float64] = np.zeros(design.shape[-1])
        for _ in range(3):
            a = (design[use] * w[use, :, None]).reshape(-1, design.shape[-1])
            bvec = (rhs[use] * w[use]).ravel()
            # normal equations (one GEMM) instead of an SVD of the tall matrix; rank from the small matrix
            ata = a.T @ a
            atb = a.T @ bvec
            scale_d = np.sqrt(np.clip(np.diag(ata), 1e-300, None))
            ata_n = ata / np.outer(scale_d, scale_d)
            rank = int(np.linalg.matrix_rank(ata_n, tol=1e-10))
            sol = np.linalg.lstsq(ata_n, atb / scale_d, rcond=1e-12)[0] / scale_d
            coef = np.asarray(sol, np.float64)
            if rank < design.shape[-1] // 2:
                raise PsfMatchError("the PSF-matching kernel fit is singular: too few or too similar stamps",
                                    {"rank": int(rank), "parameters": int(design.shape[-1]),
                                     "stamps": int(use.sum())})
            chi = ((rhs - design @ coef) * w) ** 2
            chi_pp = chi.mean(axis=1)
            med = float(np.median(chi_pp[use]))
            mad = 1.4826 * float(np.median(np.abs(chi_pp[use] - med))) or 1e-6
            new_use = chi_pp < med + cfg.clip_nsigma * mad
            if new_use.sum() < cfg.min_stamps or (new_use == use).all():
                break
            use = new_use
        diag.update(n_stamps_used=int(use.sum()), n_stamps_rejected=int((~use).sum()),
                    stamp_chi2_per_pixel_median=float(np.median(chi_pp[use])), fallback=False)

        def kernel_at(px: float, py: float) -> NDArray[np.float64]:
            uu, vv = norm_uv(np.array([px]), np.array([py]))
            ps = _poly_eval(sdeg, uu, vv)[0]
            a_b = np.empty(nb)
            a_b[0] = coef[0]
            a_b[1:] = coef[1:1 + (nb - 1) * n_sp].reshape(nb - 1, n_sp) @ ps
            return np.tensordot(a_b, kimgs, axes=1)

        bg_coef = coef[1 + (nb - 1) * n_sp:]
    else:
        # too few stars: a Gaussian kernel from the PSF widths, no spatial variation, no background
        t = np.arange(-kh, kh + 1, dtype=np.float64)
        gk = np.exp(-0.5 * (t / sigma_match) ** 2)
        g = np.outer(gk, gk)
        g /= g.sum()
        fixed = g

        def kernel_at(px: float, py: float) -> NDArray[np.float64]:
            return fixed

        bg_coef = np.zeros(n_bg)
        diag.update(n_stamps_used=0, fallback=True)
    # -- apply the kernel patch by patch
    conv_img = np.zeros_like(sci)
    var_t = np.asarray(template.variance, np.float32)
    var_t = np.where(np.isfinite(var_t), var_t, np.float32(0)).astype(np.float32, copy=False)
    var_conv = np.zeros_like(sci)
    tpad = np.pad(np.where(nodata_t, np.float32(0), tmp), kh, mode="edge")
    edges_y = np.linspace(0, ny, cfg.n_patches + 1).astype(int)
    edges_x = np.linspace(0, nx, cfg.n_patches + 1).astype(int)
    ksum = []
    for j in range(cfg.n_patches):
        for i in range(cfg.n_patches):
            y0, y1, x0, x1 = edges_y[j], edges_y[j + 1], edges_x[i], edges_x[i + 1]
            k = kernel_at(0.5 * (x0 + x1 - 1), 0.5 * (y0 + y1 - 1))
            ksum.append(float(k.sum()))
            patch = tpad[y0:y1 + 2 * kh, x0:x1 + 2 * kh]
            kf = k[::-1, ::-1].astype(np.float32)
            conv_img[y0:y1, x0:x1] = signal.fftconvolve(patch, kf, mode="valid")
            var_conv[y0:y1, x0:x1] = var_t[y0:y1, x0:x1] * np.float32((k**2).sum())
    if bg_coef.any():
        uu, vv = norm_uv(np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64))
        bg = np.zeros((ny, nx), np.float32)
        for c, (pi, pj) in zip(bg_coef, _poly_terms(bdeg), strict=True):
            bg += np.float32(c) * (vv[:, None] ** pj).astype(np.float32) * (uu[None, :] ** pi).astype(np.float32)
        conv_img += bg
    diff_img = sci - conv_img
    # -- masks: template bits grown by the kernel half-width
    tmask_grown = np.zeros_like(smask, dtype=np.int32)
    for bit in (MaskPlane.NO_DATA, MaskPlane.BAD, MaskPlane.SAT, MaskPlane.CR):
        plane = (tmask & int(bit)) != 0
        if plane.any():
            grown = ndimage.maximum_filter(plane.view(np.uint8), size=2 * kh + 1) > 0
            tmask_grown[grown] |= int(bit)
    mask = (smask | tmask_grown).astype(np.int32)
    var = (np.asarray(science.variance, np.float32) + var_conv).astype(np.float32, copy=False)
    nodata = (mask & int(MaskPlane.NO_DATA)) != 0
    diff_img[nodata] = 0.0
    var[nodata] = np.inf
    diag.update(kernel_sum_min=min(ksum), kernel_sum_max=max(ksum))
    diff = Exposure(image=diff_img.astype(np.float32, copy=False), mask=mask, variance=var, wcs=science.wcs,
                    psf=science.psf, metadata=science.metadata.copy())
    matched = Exposure(image=conv_img, mask=tmask_grown, variance=var_conv, wcs=science.wcs, psf=science.psf)
    return SubtractResult(diff, matched, float(np.median(ksum)), diag)


def prepare_template(template: Exposure, science: Exposure, *, order: int = 3) -> Exposure:
    """Warp ``template`` to the science WCS and scale it to science counts.

    The scale is ``template NJYPERCT / science NJYPERCT`` from the two
    exposures' metadata (a template without ``NJYPERCT`` is taken to be in nJy).

    Raises
    ------
    ApInputError
        If the science exposure has no WCS or no ``NJYPERCT`` (characterize it first).
    """
    if science.wcs is None or "NJYPERCT" not in science.metadata:
        raise ApInputError("the science exposure needs a fitted WCS and NJYPERCT: run characterize first")
    warped = warp_exposure(template, science.wcs, science.image.shape, order=order)
    scale = float(template.metadata.get("NJYPERCT", 1.0)) / float(science.metadata["NJYPERCT"])
    warped.image = np.asarray(warped.image, np.float32) * np.float32(scale)
    warped.variance = np.asarray(warped.variance, np.float32) * np.float32(scale**2)
    warped.metadata["NJYPERCT"] = float(science.metadata["NJYPERCT"])
    return warped
