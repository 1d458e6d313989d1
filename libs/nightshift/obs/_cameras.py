"""The cameras nightshift knows: a simulated LSSTCam-like one, a small test camera, HSC and DECam.

The LSSTCam-like camera has the real focal-plane layout: 21 science rafts of
3x3 CCDs on a 5x5 raft grid without its corners (the corners hold the
wavefront and guider sensors, not modelled), raft pitch 127 mm, CCD pitch
42.25 mm, 10 µm pixels, 0.2"/pixel (20"/mm); detector numbers follow
LSSTCam's (R01_S00 = 0 ... R43_S22 = 188). Its 4k x 4k detectors (size
configurable for tests) have 16 amplifiers, 8 across and 2 high.

HSC and DECam detectors carry their real numbers and names (from the
header translator's tables) and realistic sizes, gains and noise, but an
approximate placement: their regions at ingest come from the WCS in their
headers, not from this layout.
"""

from __future__ import annotations

import functools

import numpy as np

from ._camera import Amplifier, Camera, Detector

__all__ = ["decam_camera", "hsc_camera", "lsstcam_like", "small_test_camera"]

#: Serial overscan columns per amplifier segment of the simulated cameras.
OVERSCAN = 32


def _amplifiers(width: int, height: int, nx: int, ny: int, seed: int, gain: float, read_noise: float,
                saturation: float, bias: float, overscan: int = OVERSCAN) -> tuple[Amplifier, ...]:
    if width % nx or height % ny:
        raise ValueError(f"detector size {width}x{height} is not divisible into {nx}x{ny} amplifiers")
    aw, ah = width // nx, height // ny
    rng = np.random.default_rng(seed)
    amps = []
    for j in range(ny):
        for i in range(nx):
            rx0, ry0 = i * (aw + overscan), j * ah
            amps.append(Amplifier(
                name=f"C{j}{i}",
                bbox=(i * aw, j * ah, (i + 1) * aw, (j + 1) * ah),
                raw_bbox=(rx0, ry0, rx0 + aw + overscan, ry0 + ah),
                raw_data_bbox=(rx0, ry0, rx0 + aw, ry0 + ah),
                raw_overscan_bbox=(rx0 + aw, ry0, rx0 + aw + overscan, ry0 + ah),
                gain=round(float(gain * rng.uniform(0.95, 1.05)), 4),
                read_noise=round(float(read_noise * rng.uniform(0.9, 1.1)), 3),
                saturation=saturation,
                bias_level=round(float(bias + rng.uniform(-500, 500)), 1),
            ))
    return tuple(amps)


@functools.lru_cache(maxsize=8)
def lsstcam_like(detector_size: int = 4096, name: str = "LSSTCam-sim") -> Camera:
    """The simulated LSSTCam-like camera: 189 science detectors of ``detector_size`` squared pixels.

    Parameters
    ----------
    detector_size : int
        Pixels per side (4096 by default; a multiple of 16, smaller for tests).
        The pixel size grows as the detectors shrink, so the focal plane keeps
        its real extent (3.5 degrees across) at any size.
    name : str
        Camera (and instrument) name.
    """
    if detector_size < 16 or detector_size % 16:
        raise ValueError(f"detector_size must be a positive multiple of 16, not {detector_size}")
    pixel = 0.010 * 4096 / detector_size  # mm
    dets = {}
    raft_index = 0
    for ri in range(5):
        for rj in range(5):
            if (ri, rj) in {(0, 0), (0, 4), (4, 0), (4, 4)}:
                continue
            for si in range(3):
                for sj in range(3):
                    det_id = raft_index * 9 + si * 3 + sj
                    dets[det_id] = Detector(
                        id=det_id, name=f"R{ri}{rj}_S{si}{sj}", purpose="SCIENCE",
                        width=detector_size, height=detector_size, pixel_size=pixel,
                        x_mm=(rj - 2) * 127.0 + (sj - 1) * 42.25, y_mm=(ri - 2) * 127.0 + (si - 1) * 42.25,
                        rotation=0.0,
                        amplifiers=_amplifiers(detector_size, detector_size, 8, 2, seed=det_id, gain=1.6,
                                               read_noise=6.0, saturation=40_000.0, bias=20_000.0),
                    )
            raft_index += 1
    return Camera(name=name, detectors=dets, plate_scale=20.0)


@functools.lru_cache(maxsize=8)
def small_test_camera(detector_size: int = 256, name: str = "TestCam") -> Camera:
    """A small camera for tests: 2x2 detectors of 2.56 mm (51" on the sky), 2 amplifiers each, 1 mm apart."""
    if detector_size < 4 or detector_size % 2:
        raise ValueError(f"detector_size must be an even number >= 4, not {detector_size}")
    pixel = 0.010 * 256 / detector_size  # the focal plane keeps its size (and the sky its extent) at any size
    side = detector_size * pixel
    dets = {}
    for j in range(2):
        for i in range(2):
            det_id = j * 2 + i
            dets[det_id] = Detector(
                id=det_id, name=f"D{det_id}", purpose="SCIENCE", width=detector_size, height=detector_size,
                pixel_size=pixel, x_mm=(i - 0.5) * (side + 1.0), y_mm=(j - 0.5) * (side + 1.0), rotation=0.0,
                amplifiers=_amplifiers(detector_size, detector_size, 2, 1, seed=100 + det_id, gain=2.0,
                                       read_noise=5.0, saturation=40_000.0, bias=1_000.0, overscan=8),
            )
    return Camera(name=name, detectors=dets, plate_scale=20.0)


def _grid_camera(name: str, names: dict[int, str], width: int, height: int, nx_amps: int, pixel: float,
                 plate_scale: float, gain: float, read_noise: float, focus: set[int]) -> Camera:
    ids = sorted(names)
    per_row = int(np.ceil(np.sqrt(len(ids))))
    dets = {}
    for k, det_id in enumerate(ids):
        row, col = divmod(k, per_row)
        dets[det_id] = Detector(
            id=det_id, name=names[det_id], purpose="FOCUS" if det_id in focus else "SCIENCE",
            width=width, height=height, pixel_size=pixel,
            x_mm=(col - (per_row - 1) / 2) * (width * pixel + 1.0),
            y_mm=(row - (per_row - 1) / 2) * (height * pixel + 1.0), rotation=0.0,
            amplifiers=_amplifiers(width, height, nx_amps, 1, seed=det_id, gain=gain, read_noise=read_noise,
                                   saturation=40_000.0, bias=1_000.0),
        )
    return Camera(name=name, detectors=dets, plate_scale=plate_scale)


@functools.lru_cache(maxsize=1)
def hsc_camera() -> Camera:
    """Hyper Suprime-Cam: 104 science and 8 focus CCDs of 2048x4176, 4 amplifiers, 15 µm, 0.168"/pixel."""
    from astro_metadata_translator.translators import HscTranslator

    table = list(HscTranslator._DETECTOR_NUM_TO_UNIQUE_NAME)
    return _grid_camera("HSC", dict(enumerate(table)), 2048, 4176, 4, 0.015, 11.2, 3.5, 4.5, set(range(104, 112)))


@functools.lru_cache(maxsize=1)
def decam_camera() -> Camera:
    """DECam: the CCDs of the translator's table (CCDNUM -> S1..N31), 2048x4096, 2 amplifiers, 0.263"/pixel."""
    from astro_metadata_translator.translators import DecamTranslator

    return _grid_camera("DECam", dict(DecamTranslator.detector_names), 2048, 4096, 2, 0.015, 17.5, 4.3, 7.0, set())
