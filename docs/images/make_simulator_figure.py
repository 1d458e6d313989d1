"""Make docs/images/simulator-raw.png: a simulated raw, its calibrated image, and the injected truth.

Run: ``.venv/bin/python docs/images/make_simulator_figure.py`` (about a minute).

The calibration here is the minimum that undoes what the simulator put in: per amplifier, subtract
the overscan mean and trim; subtract the master bias; multiply by the gain; divide by the master
flat (the same models ``certify_master_calibs`` writes).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nightshift.obs import lsstcam_like  # noqa: E402
from nightshift.obs.sim import Observation, bias_structure, flat_pattern, render_detector  # noqa: E402

SIZE, DETECTOR, SEED = 1024, 94, 3


def calibrate(adu: np.ndarray, detector: int) -> np.ndarray:
    camera = lsstcam_like(SIZE)
    det = camera[detector]
    out = np.zeros((det.height, det.width), dtype=np.float32)
    bias = bias_structure(camera, detector)
    for amp in det.amplifiers:
        ox0, oy0, ox1, oy1 = amp.raw_overscan_bbox
        dx0, dy0, dx1, dy1 = amp.raw_data_bbox
        x0, y0, x1, y1 = amp.bbox
        level = adu[oy0:oy1, ox0:ox1].astype(np.float32).mean()
        out[y0:y1, x0:x1] = (adu[dy0:dy1, dx0:dx1] - level - bias[y0:y1, x0:x1]) * amp.gain
    return out / flat_pattern(camera, detector)


def main() -> None:
    camera = lsstcam_like(SIZE)
    obs = Observation("LSSTCam-sim", 20261206, 7, "2026-12-07T03:00:00", ra=150.0, dec=2.0, sky_angle=20.0,
                      seeing=0.9, physical_filter="r_57")
    rendered = render_detector(obs, camera, DETECTOR, seed=SEED)
    calexp = calibrate(rendered.adu, DETECTOR)
    fig, axes = plt.subplots(1, 2, figsize=(14, 7.6))
    raw = rendered.adu.astype(float)
    lo, hi = np.percentile(raw, [1, 99.5])
    axes[0].imshow(raw, origin="lower", cmap="gray", vmin=lo, vmax=hi)
    axes[0].set_title(f"raw (ADU): {len(camera[DETECTOR].amplifiers)} amplifiers with their own bias level,\n"
                      "serial overscan columns at the right of each, hot and dead columns")
    sky = np.median(calexp)
    axes[1].imshow(np.arcsinh((calexp - sky) / 30.0), origin="lower", cmap="gray", vmin=-1, vmax=6)
    shown = [r for r in rendered.truth if r["flux_e"] > 0]
    for row in shown:
        colour = {"appearing": "tab:red", "fading": "tab:orange", "rising": "tab:cyan"}[row["kind"]]
        axes[1].add_patch(plt.Circle((row["x"], row["y"]), 14, fill=False, color=colour, lw=1.5))
        axes[1].annotate(f"{row['kind']} S/N {row['snr_diff']:.0f}", (row["x"] + 16, row["y"] + 16), color=colour,
                         fontsize=8)
    axes[1].set_title(f"calibrated (overscan, bias, gain, flat), sky-subtracted, asinh stretch;\n"
                      f"circles: the {len(shown)} injected transients shining now (truth table, expected\n"
                      f"difference-image S/N); {len(rendered.truth) - len(shown)} more on this detector are off")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"LSSTCam-sim detector {camera[DETECTOR].name} at {SIZE}x{SIZE}, visit {obs.exposure_id}, "
                 f"seeing {obs.seeing}\", seed {SEED}: {rendered.cosmic_rays} cosmic rays"
                 f"{', a satellite trail' if rendered.satellite else ''}")
    for ax in axes:
        ax.title.set_fontsize(10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out = Path(__file__).with_name("simulator-raw.png")
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
