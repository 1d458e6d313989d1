"""HDF5 formatters (h5py): Exposure and array round trips, components, cutouts, options, damage, butler use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from io_support import bytes_read_by
from registry_support import populate
from test_formatters import SCF, make_exposure, registry_formatter

from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.formatters import (
    Box,
    Exposure,
    FormatterError,
    FormatterFactory,
    FormatterSpec,
    UnsupportedComponentError,
    UnsupportedParameterError,
)

CALEXP = DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure")
DID = {"instrument": "Cam", "visit": 1, "detector": 2}


def rich_exposure(shape: tuple[int, int] = (64, 80)) -> Exposure:
    """An exposure whose header and WCS exercise the exact round trip (comments, HISTORY, CONTINUE, SIP)."""
    exp = make_exposure(shape)
    exp.origin = (1000, 2000)
    exp.metadata["EXPTIME"] = (30.0, "exposure time [s]")
    exp.metadata["OBJECT"] = "a long object name" * 8  # long string: CONTINUE cards
    exp.metadata["HISTORY"] = "calibrated by nightshift"
    exp.metadata["COMMENT"] = "a comment card"
    exp.metadata["HIERARCH NS DET TEMP"] = -101.25
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [150.123456789012, 2.987654321098]
    wcs.wcs.crpix = [shape[1] / 2 + 0.25, shape[0] / 2 - 0.75]
    wcs.wcs.cd = [[-5.5e-5, 1.0e-7], [2.0e-7, 5.5e-5]]
    header = wcs.to_header(relax=True)
    header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 1.5e-6, "B_0_2": -2.5e-6, "A_1_1": 3e-7, "B_1_1": 4e-7})
    exp.wcs = WCS(header)
    exp.wcs.pixel_shape = (shape[1], shape[0])
    return exp


def assert_same_exposure(back: Exposure, exp: Exposure) -> None:
    for plane in ("image", "mask", "variance", "psf"):
        np.testing.assert_array_equal(getattr(back, plane), getattr(exp, plane))
        assert getattr(back, plane).dtype == getattr(exp, plane).dtype
    assert back.metadata.tostring() == exp.metadata.tostring()  # every card, comments and order included
    assert back.wcs.to_header(relax=True).tostring() == exp.wcs.to_header(relax=True).tostring()
    assert back.wcs.pixel_shape == exp.wcs.pixel_shape
    assert back.origin == exp.origin


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("options", [{}, {"compression": "gzip", "compression_level": 6}, {"compression": "lzf"}])
def test_exposure_round_trip_is_exact(tmp_path: Path, options: dict) -> None:
    exp = rich_exposure()
    f = registry_formatter("hdf5_exposure", options)
    path = tmp_path / f"calexp{f.extension}"
    f.write(exp, path)
    back = f.read(path, SCF.get("Exposure"))
    assert isinstance(back, Exposure)
    assert_same_exposure(back, exp)
    pixels = np.array([[0, 0], [17.5, 3.25], [79, 63]])
    np.testing.assert_array_equal(back.wcs.all_pix2world(pixels, 0), exp.wcs.all_pix2world(pixels, 0))
    assert back.wcs.sip is not None and back.wcs.sip.a_order == 2
    assert back.metadata["OBJECT"] == "a long object name" * 8
    assert back.metadata.comments["EXPTIME"] == "exposure time [s]"
    with h5py.File(path, "r") as h5:  # one dataset per plane, readable by any HDF5 tool
        assert {"image", "mask", "variance", "psf", "wcs", "metadata"} <= set(h5)
        assert h5.attrs["nightshift_format"] == "exposure"


def test_exposure_without_wcs_or_psf(tmp_path: Path) -> None:
    exp = Exposure(image=np.arange(12, dtype=np.float64).reshape(3, 4))
    f = registry_formatter("hdf5_exposure")
    f.write(exp, tmp_path / "e.h5")
    back = f.read(tmp_path / "e.h5", SCF.get("Exposure"))
    assert back.wcs is None and back.psf is None and len(back.metadata) == 0
    np.testing.assert_array_equal(back.image, exp.image)
    assert f.read(tmp_path / "e.h5", SCF.get("Wcs"), "wcs") is None
    assert f.read(tmp_path / "e.h5", SCF.get("NumpyArray"), "psf") is None


def test_write_refuses_other_types(tmp_path: Path) -> None:
    with pytest.raises(FormatterError, match="writes Exposure"):
        registry_formatter("hdf5_exposure").write(np.zeros((2, 2)), tmp_path / "x.h5")


# ------------------------------------------------------------------------------------------ components
@pytest.mark.parametrize("component", ["wcs", "psf", "metadata", "mask", "image", "variance"])
def test_component_read_alone(tmp_path: Path, component: str) -> None:
    exp = rich_exposure()
    f = registry_formatter("hdf5_exposure")
    f.write(exp, tmp_path / "c.h5")
    sc = SCF.component_class("Exposure", component)
    value = f.read(tmp_path / "c.h5", sc, component)
    assert isinstance(value, sc.pytype)
    if component == "wcs":
        assert value.to_header(relax=True).tostring() == exp.wcs.to_header(relax=True).tostring()
    elif component == "metadata":
        assert value.tostring() == exp.metadata.tostring()
    else:
        np.testing.assert_array_equal(value, getattr(exp, component))


def _chunk_boxes(dset: h5py.Dataset) -> Iterator[tuple[int, int, int, int]]:
    """``(byte offset, size, row0, col0)`` of every stored chunk of a 2-d dataset."""
    for i in range(dset.id.get_num_chunks()):
        info = dset.id.get_chunk_info(i)
        yield info.byte_offset, info.size, info.chunk_offset[0], info.chunk_offset[1]


def _damage_chunks(path: Path, name: str, keep: Box | None = None) -> int:
    """Overwrite the stored (compressed) bytes of every chunk of ``name`` not overlapping ``keep``."""
    with h5py.File(path, "r") as h5:
        dset = h5[name]
        rows, cols = dset.chunks
        damaged = []
        for offset, size, r0, c0 in _chunk_boxes(dset):
            overlaps = keep is not None and (
                r0 < keep.y_max and keep.y_min < r0 + rows and c0 < keep.x_max and keep.x_min < c0 + cols
            )
            if not overlaps:
                damaged.append((offset, size))
    with open(path, "r+b") as fh:
        for offset, size in damaged:
            fh.seek(offset)
            fh.write(b"\xff" * size)
    return len(damaged)


def test_components_do_not_read_other_planes(tmp_path: Path) -> None:
    """REQ-0034: with every image chunk destroyed, the WCS, metadata, PSF and other planes still read."""
    exp = rich_exposure((256, 256))
    f = registry_formatter("hdf5_exposure", {"compression": "gzip", "chunk_shape": [64, 64]})
    path = tmp_path / "c.h5"
    f.write(exp, path)
    assert _damage_chunks(path, "image") == 16
    assert f.read(path, SCF.get("Wcs"), "wcs").to_header(relax=True) == exp.wcs.to_header(relax=True)
    assert f.read(path, SCF.get("Header"), "metadata")["EXPTIME"] == 30.0
    np.testing.assert_array_equal(f.read(path, SCF.get("NumpyArray"), "psf"), exp.psf)
    np.testing.assert_array_equal(f.read(path, SCF.get("NumpyArray"), "mask"), exp.mask)
    with pytest.raises(FormatterError, match="cannot read Exposure image"):
        f.read(path, SCF.get("NumpyArray"), "image")
    with pytest.raises(FormatterError):
        f.read(path, SCF.get("Exposure"))


def test_unknown_component_and_parameter(tmp_path: Path) -> None:
    f = registry_formatter("hdf5_exposure")
    f.write(make_exposure(), tmp_path / "c.h5")
    with pytest.raises(UnsupportedComponentError):
        f.read(tmp_path / "c.h5", SCF.get("NumpyArray"), "background")
    with pytest.raises(UnsupportedParameterError, match="cannot apply"):
        f.read(tmp_path / "c.h5", SCF.get("Exposure"), parameters={"columns": ["x"]})


# ------------------------------------------------------------------------------------------ cutouts
def test_bbox_reads_only_the_chunks_it_overlaps(tmp_path: Path) -> None:
    """REQ-0033: every chunk outside the box is destroyed, yet the cutout reads back exactly."""
    exp = rich_exposure((512, 384))
    f = registry_formatter("hdf5_exposure", {"compression": "gzip", "chunk_shape": [64, 64]})
    path = tmp_path / "c.h5"
    f.write(exp, path)
    box = Box(x_min=70, y_min=130, x_max=120, y_max=180)  # inside chunk rows 2, cols 1
    for plane in ("image", "mask", "variance"):
        assert _damage_chunks(path, plane, keep=box) == 8 * 6 - 1
    cut = f.read(path, SCF.get("Exposure"), parameters={"bbox": box})
    assert cut.image.shape == (50, 50)
    for plane in ("image", "mask", "variance"):
        np.testing.assert_array_equal(getattr(cut, plane), getattr(exp, plane)[130:180, 70:120])
    assert cut.origin == (1000 + 70, 2000 + 130)
    np.testing.assert_allclose(cut.wcs.pixel_to_world_values(0, 0), exp.wcs.pixel_to_world_values(70, 130))
    np.testing.assert_array_equal(cut.psf, exp.psf)
    plane = f.read(path, SCF.get("NumpyArray"), "image", {"bbox": (70, 130, 120, 180)})
    np.testing.assert_array_equal(plane, exp.image[130:180, 70:120])
    wcs = f.read(path, SCF.get("Wcs"), "wcs", {"bbox": box})
    np.testing.assert_allclose(wcs.pixel_to_world_values(0, 0), exp.wcs.pixel_to_world_values(70, 130))
    with pytest.raises(FormatterError):  # the rest of the plane really is gone
        f.read(path, SCF.get("NumpyArray"), "image")


def test_bbox_outside_the_image_is_an_error(tmp_path: Path) -> None:
    f = registry_formatter("hdf5_exposure")
    f.write(make_exposure((40, 40)), tmp_path / "c.h5")
    with pytest.raises(UnsupportedParameterError, match="outside"):
        f.read(tmp_path / "c.h5", SCF.get("Exposure"), parameters={"bbox": Box(30, 30, 50, 50)})
    with pytest.raises(UnsupportedParameterError, match="outside"):
        f.read(tmp_path / "c.h5", SCF.get("Wcs"), "wcs", {"bbox": Box(30, 30, 50, 50)})
    with pytest.raises(UnsupportedParameterError, match="invalid bbox"):
        f.read(tmp_path / "c.h5", SCF.get("Exposure"), parameters={"bbox": (5, 5, 1, 1)})


def test_cutout_of_a_4k_plane_reads_only_the_chunks_it_overlaps(tmp_path: Path) -> None:
    """A 50×50 cutout of a 4k×4k float32 plane reads the two 256×256 chunks it overlaps, not the 64 MiB plane."""
    rng = np.random.default_rng(3)
    image = rng.random((4096, 4096), dtype=np.float32)
    f = registry_formatter("hdf5_exposure")
    path = tmp_path / "big.h5"
    f.write(Exposure(image=image), path)
    with h5py.File(path, "r") as h5:
        assert h5["image"].chunks == (256, 256) and h5["image"].compression is None
    sc = SCF.get("NumpyArray")
    box = Box(2000, 3000, 2050, 3050)  # x 2000..2050 crosses the chunk column boundary at 2048; y stays in one row
    chunk_bytes = 256 * 256 * 4
    metadata_slack = 64 * 1024  # superblock, object headers, chunk index
    try:
        cut, n_cut = bytes_read_by(lambda: f.read(path, sc, "image", {"bbox": box}))
        np.testing.assert_array_equal(cut, image[3000:3050, 2000:2050])
        assert 2 * chunk_bytes <= n_cut <= 2 * chunk_bytes + metadata_slack, n_cut
        exposure, n_exposure = bytes_read_by(lambda: f.read(path, SCF.get("Exposure"), parameters={"bbox": box}))
        np.testing.assert_array_equal(exposure.image, image[3000:3050, 2000:2050])
        assert n_exposure <= 3 * 2 * chunk_bytes + 4 * metadata_slack, n_exposure  # three planes, same chunks
        full, n_full = bytes_read_by(lambda: f.read(path, sc, "image"))
        np.testing.assert_array_equal(full, image)
        assert n_full >= image.nbytes  # the counter does see a whole-plane read
    finally:
        path.unlink()  # 200 MB: do not keep it among pytest's retained temporary directories


# ------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("options", "compression", "opts", "shuffle"),
    [
        ({"compression": "gzip"}, "gzip", 4, True),
        ({"compression": "gzip", "compression_level": 9, "shuffle": False}, "gzip", 9, False),
        ({"compression": "lzf"}, "lzf", None, True),
        ({}, None, None, False),
        ({"compression": "none", "chunk_shape": [32, 16]}, None, None, False),
    ],
)
def test_writer_options_are_applied(tmp_path: Path, options: dict, compression: str | None, opts: int | None,
                                    shuffle: bool) -> None:
    """REQ-0060: compression, level, shuffle and chunk shape come from configuration."""
    exp = Exposure(image=np.zeros((300, 200), np.float32))
    path = tmp_path / "c.h5"
    registry_formatter("hdf5_exposure", options).write(exp, path)
    with h5py.File(path, "r") as h5:
        for plane in ("image", "mask", "variance"):
            dset = h5[plane]
            assert dset.compression == compression
            assert dset.compression_opts == opts
            assert dset.shuffle is shuffle
            assert dset.chunks == tuple(options.get("chunk_shape", (256, 200)))
    if compression is not None:
        assert path.stat().st_size * 10 < 3 * exp.image.nbytes
    np.testing.assert_array_equal(registry_formatter("hdf5_exposure").read(path, SCF.get("Exposure")).image, exp.image)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "blue"}, "does not understand option"),
        ({"compression": "zstd"}, "not one of"),
        ({"compression": "RICE_1"}, "not one of"),
        ({"compression": "lzf", "compression_level": 3}, "gzip only"),
        ({"compression": "gzip", "compression_level": 12}, "0-9"),
        ({"compression": "gzip", "shuffle": "yes"}, "true or false"),
        ({"chunk_shape": [0, 64]}, "positive integers"),
        ({"chunk_shape": "64x64"}, "positive integers"),
    ],
)
def test_bad_options_are_rejected_when_the_formatter_is_built(options: dict, message: str) -> None:
    with pytest.raises(UnsupportedParameterError, match=message):
        registry_formatter("hdf5_exposure", options)


def test_chunk_shape_of_the_wrong_rank_is_a_write_error(tmp_path: Path) -> None:
    f = registry_formatter("hdf5_array", {"chunk_shape": [16, 16]})
    with pytest.raises(FormatterError, match="has 2 dimension"):
        f.write(np.zeros((4, 4, 4)), tmp_path / "a.h5")
    assert not (tmp_path / "a.h5").exists()  # no half-written file is left behind
    (tmp_path / "b.h5").write_bytes(b"existing")
    with pytest.raises(FormatterError, match="cannot write array"):  # never overwrites a file
        registry_formatter("hdf5_array").write(np.zeros(3), tmp_path / "b.h5")
    assert (tmp_path / "b.h5").read_bytes() == b"existing"


# ------------------------------------------------------------------------------------------ damage
def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00not an hdf5 file" * 100)


def _fits_instead(path: Path) -> None:
    path.unlink()
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(path)


def _foreign_hdf5(path: Path) -> None:
    path.unlink()
    with h5py.File(path, "w") as h5:
        h5["something_else"] = np.arange(3)


@pytest.mark.parametrize("damage", [_truncated, _garbage, _fits_instead, _foreign_hdf5])
@pytest.mark.parametrize("component", [None, "image", "wcs", "metadata"])
def test_damaged_or_foreign_file_is_a_formatter_error(
    tmp_path: Path, damage: Callable[[Path], None], component: str | None
) -> None:
    f = registry_formatter("hdf5_exposure")
    path = tmp_path / "c.h5"
    f.write(rich_exposure((128, 128)), path)
    damage(path)
    sc = SCF.get("Exposure") if component is None else SCF.component_class("Exposure", component)
    with pytest.raises(FormatterError) as info:
        f.read(path, sc, component)
    assert str(path) in str(info.value)
    if damage is _foreign_hdf5:
        assert "not an HDF5 exposure written by nightshift" in str(info.value)
        assert "something_else" in str(info.value)  # says what the file does hold


# ------------------------------------------------------------------------------------------ arrays
@pytest.mark.parametrize(
    "array",
    [
        np.arange(100 * 120, dtype=np.float64).reshape(100, 120),
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        np.array(3.5),
        np.zeros((0, 5), dtype=np.float32),
        np.array([b"ab", b"cde"]),
        np.arange(6, dtype=">i4").reshape(2, 3),
    ],
    ids=["float64-2d", "int16-3d", "scalar", "empty", "bytes", "big-endian"],
)
@pytest.mark.parametrize("options", [{}, {"compression": "gzip"}])
def test_array_round_trip(tmp_path: Path, array: np.ndarray, options: dict) -> None:
    f = registry_formatter("hdf5_array", options)
    f.write(array, tmp_path / "a.h5")
    back = f.read(tmp_path / "a.h5", SCF.get("NumpyArray"))
    np.testing.assert_array_equal(back, array)
    assert back.shape == array.shape and back.dtype == array.dtype


def test_array_bbox_and_refusals(tmp_path: Path) -> None:
    a = np.arange(1000 * 900, dtype=np.float32).reshape(1000, 900)
    f = registry_formatter("hdf5_array", {"compression": "lzf"})
    f.write(a, tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5", "r") as h5:
        assert h5["data"].chunks == (256, 256) and h5["data"].compression == "lzf"
    cut = f.read(tmp_path / "a.h5", SCF.get("NumpyArray"), parameters={"bbox": Box(10, 20, 30, 25)})
    np.testing.assert_array_equal(cut, a[20:25, 10:30])
    with pytest.raises(UnsupportedComponentError):
        f.read(tmp_path / "a.h5", SCF.get("NumpyArray"), "image")
    with pytest.raises(FormatterError, match="dtype object"):
        f.write(np.array([object()]), tmp_path / "o.h5")
    with pytest.raises(FormatterError, match="convert strings to bytes"):
        f.write(np.array(["text"]), tmp_path / "u.h5")
    with pytest.raises(FormatterError, match="numpy arrays"):
        f.write([1, 2], tmp_path / "l.h5")


# ------------------------------------------------------------------------------------------ configuration and butler
def test_selected_by_configuration() -> None:
    """REQ-0025: a datastore configuration chooses HDF5 (with options) for Exposure."""
    factory = FormatterFactory({"storage_classes": {
        "Exposure": {"formatter": "hdf5_exposure", "options": {"compression": "gzip"}},
        "NumpyArray": "hdf5_array",
    }})
    spec = factory.spec_for(CALEXP)
    assert spec == FormatterSpec("hdf5_exposure", {"compression": "gzip"})
    formatter = factory.create(spec)
    assert formatter.name == "hdf5_exposure" and formatter.extension == ".h5"
    assert factory.create(factory.spec_for(DatasetType("raw", ["visit"], "NumpyArray"))).name == "hdf5_array"


def test_butler_writes_and_reads_calexp_as_hdf5(tmp_path: Path) -> None:
    """A calexp written as HDF5, chosen by the repository's datastore configuration, read back through Butler.get."""
    cfg = {"cls": "posix", "root": "store", "formatters": {"storage_classes": {
        "Exposure": {"formatter": "hdf5_exposure", "options": {"compression": "gzip", "compression_level": 3}},
    }}}
    Butler.create(tmp_path / "r", datastore=cfg).close()
    exp = rich_exposure((96, 128))
    with Butler(tmp_path / "r", run="u/tester/run") as b:
        populate(b.registry)
        b.register_dataset_type(CALEXP)
        ref = b.put(exp, "calexp", DID)
        uri = b.get_uri(ref)
        assert uri.endswith(".h5")
        with h5py.File(unquote(urlparse(uri).path), "r") as h5:
            assert h5["image"].compression == "gzip" and h5["image"].compression_opts == 3
        assert_same_exposure(b.get("calexp", DID), exp)
        wcs = b.get("calexp.wcs", DID)
        assert wcs.to_header(relax=True).tostring() == exp.wcs.to_header(relax=True).tostring()
        np.testing.assert_array_equal(b.get("calexp.psf", DID), exp.psf)
        assert b.get("calexp.metadata", DID)["HISTORY"][0] == "calibrated by nightshift"
        cut = b.get("calexp", DID, parameters={"bbox": Box(10, 20, 60, 70)})
        np.testing.assert_array_equal(cut.image, exp.image[20:70, 10:60])
        assert cut.origin == (1010, 2020)
        np.testing.assert_array_equal(
            b.get("calexp.variance", DID, parameters={"bbox": Box(0, 0, 8, 4)}), exp.variance[:4, :8]
        )
