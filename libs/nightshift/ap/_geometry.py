"""The minimal amplifier / detector geometry ISR needs, as small protocols.

Any object with these attributes plugs in (the instrument package provides
the concrete camera geometry); :class:`AmplifierGeometry` and
:class:`DetectorGeometry` are plain implementations for tests and simple
cameras. Boxes are ``(x_min, y_min, x_max, y_max)`` tuples, ``(slice_y,
slice_x)`` pairs or :class:`nightshift.butler.formatters.Box`, max exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..butler.formatters import Box
from ._exceptions import ApInputError

__all__ = ["Amplifier", "AmplifierGeometry", "Detector", "DetectorGeometry", "as_box"]


@runtime_checkable
class Amplifier(Protocol):
    """One amplifier (readout segment) of a detector, as ISR sees it.

    :class:`nightshift.obs.Amplifier` satisfies it. An amplifier may also have ``flip_x`` / ``flip_y``
    (bool, default False): the raw segment is mirrored relative to the assembled image.
    """

    @property
    def name(self) -> str:
        """Amplifier name (for flags and error messages)."""
        ...

    @property
    def raw_data_bbox(self) -> Any:
        """Box of the imaging pixels in the raw array."""
        ...

    @property
    def raw_overscan_bbox(self) -> Any:
        """Box of the serial overscan pixels in the raw array (same rows as the data)."""
        ...

    @property
    def bbox(self) -> Any:
        """Box of the amplifier's pixels in the assembled detector image."""
        ...

    @property
    def gain(self) -> float:
        """Gain in electrons per ADU."""
        ...

    @property
    def read_noise(self) -> float:
        """Read noise in electrons."""
        ...

    @property
    def saturation(self) -> float:
        """Saturation level in ADU (overscan not subtracted)."""
        ...


@runtime_checkable
class Detector(Protocol):
    """A detector: its id, assembled size and amplifiers (:class:`nightshift.obs.Detector` satisfies it)."""

    @property
    def id(self) -> int:
        """Detector number."""
        ...

    @property
    def width(self) -> int:
        """Columns of the assembled image."""
        ...

    @property
    def height(self) -> int:
        """Rows of the assembled image."""
        ...

    @property
    def amplifiers(self) -> Sequence[Amplifier]:
        """The amplifiers, tiling the assembled image."""
        ...


def as_box(value: Any) -> Box:
    """A :class:`~nightshift.butler.formatters.Box` from any accepted box form.

    Raises
    ------
    ApInputError
        If ``value`` is not a box.
    """
    try:
        return Box.coerce(value)
    except (TypeError, ValueError) as exc:
        raise ApInputError(f"not a pixel box: {value!r} ({exc})") from exc


@dataclass(frozen=True)
class AmplifierGeometry:
    """A plain :class:`Amplifier` (see the protocol for the attributes)."""

    name: str
    raw_data_bbox: Any
    raw_overscan_bbox: Any
    bbox: Any
    gain: float = 1.0
    read_noise: float = 5.0
    saturation: float = 65535.0
    flip_x: bool = False
    flip_y: bool = False


@dataclass(frozen=True)
class DetectorGeometry:
    """A plain :class:`Detector` (see the protocol for the attributes)."""

    id: int
    width: int
    height: int
    amplifiers: Sequence[Amplifier]

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the assembled image."""
        return self.height, self.width

    @classmethod
    def grid(
        cls,
        detector_id: int,
        n_x: int,
        n_y: int,
        amp_shape: tuple[int, int],
        *,
        overscan: int = 32,
        gain: float | Sequence[float] = 1.0,
        read_noise: float = 5.0,
        saturation: float = 65535.0,
    ) -> DetectorGeometry:
        """A detector of ``n_x`` × ``n_y`` amplifiers laid out raw side by side, each with a serial overscan.

        The raw array is ``(n_y * rows, n_x * (cols + overscan))``: every
        amplifier's data block is followed (to the right) by its overscan columns.

        Parameters
        ----------
        detector_id : int
            Detector number.
        n_x, n_y : int
            Amplifiers per row and per column.
        amp_shape : tuple of int
            ``(rows, cols)`` of one amplifier's imaging area.
        overscan : int
            Serial overscan columns per amplifier.
        gain : float or sequence of float
            Gain (e-/ADU) of every amplifier, or one per amplifier in row-major order.
        read_noise, saturation : float
            Read noise (e-) and saturation (ADU) of every amplifier.
        """
        rows, cols = amp_shape
        gains = [float(gain)] * (n_x * n_y) if isinstance(gain, (int, float)) else [float(g) for g in gain]
        if len(gains) != n_x * n_y:
            raise ApInputError(f"{len(gains)} gains given for {n_x * n_y} amplifiers")
        amps: list[Amplifier] = []
        for j in range(n_y):
            for i in range(n_x):
                x0 = i * (cols + overscan)
                amps.append(AmplifierGeometry(
                    name=f"C{j}{i}",
                    raw_data_bbox=(x0, j * rows, x0 + cols, (j + 1) * rows),
                    raw_overscan_bbox=(x0 + cols, j * rows, x0 + cols + overscan, (j + 1) * rows),
                    bbox=(i * cols, j * rows, (i + 1) * cols, (j + 1) * rows),
                    gain=gains[j * n_x + i],
                    read_noise=read_noise,
                    saturation=saturation,
                ))
        return cls(detector_id, n_x * cols, n_y * rows, amps)
