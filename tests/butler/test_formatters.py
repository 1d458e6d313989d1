"""Formatters: round trips, components, parameters, configuration, plugin registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from io_support import bytes_read_by

from nightshift.butler import DatasetType
from nightshift.butler._storage_class import StorageClassFactory
from nightshift.butler.formatters import (
    Box,
    Exposure,
    Formatter,
    FormatterDependencyError,
    FormatterError,
    FormatterFactory,
    FormatterNotFoundError,
    FormatterRegistry,
    FormatterSpec,
    UnsupportedComponentError,
    UnsupportedParameterError,
    default_formatter_registry,
)

SCF = StorageClassFactory()


def make_wcs(shape: tuple[int, int]) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return w


def make_exposure(shape: tuple[int, int] = (64, 80), seed: int = 1) -> Exposure:
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 5, shape).astype(np.float32)
    md = fits.Header()
    md["EXPTIME"] = 30.0
    md["FILTER"] = "r"
    return Exposure(
        image=image,
        mask=(rng.integers(0, 4, shape)).astype(np.int32),
        variance=np.full(shape, 25.0, dtype=np.float32),
        wcs=make_wcs(shape),
        psf=np.outer(np.hanning(11), np.hanning(11)).astype(np.float64),
        metadata=md,
    )


def registry_formatter(name: str, options: dict | None = None):
    return default_formatter_registry().create(FormatterSpec(name, options or {}))


def test_exposure_fits_round_trip(tmp_path: Path) -> None:
    exp = make_exposure()
    f = registry_formatter("fits_exposure")
    path = tmp_path / "calexp.fits"
    f.write(exp, path)
    back = f.read(path, SCF.get("Exposure"))
    assert isinstance(back, Exposure)
    np.testing.assert_array_equal(back.image, exp.image)
    np.testing.assert_array_equal(back.mask, exp.mask)
    np.testing.assert_array_equal(back.variance, exp.variance)
    np.testing.assert_array_equal(back.psf, exp.psf)
    assert back.metadata["EXPTIME"] == 30.0 and back.metadata["FILTER"] == "r"
    np.testing.assert_allclose(back.wcs.wcs.crval, exp.wcs.wcs.crval)
    # The file is plain FITS any tool can read (REQ-0061).
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE", "PSF"]


@pytest.mark.parametrize("component", ["wcs", "psf", "metadata", "mask", "image", "variance"])
def test_exposure_component_read_alone(tmp_path: Path, component: str) -> None:
    exp = make_exposure()
    f = registry_formatter("fits_exposure")
    path = tmp_path / "calexp.fits"
    f.write(exp, path)
    sc = SCF.component_class("Exposure", component)
    value = f.read(path, sc, component)
    assert isinstance(value, sc.pytype)
    if component in ("psf", "mask", "image", "variance"):
        np.testing.assert_array_equal(value, getattr(exp, component))


def test_wcs_component_does_not_read_pixels(tmp_path: Path) -> None:
    """REQ-0034: reading the WCS of an exposure whose pixel data is damaged still works."""
    exp = make_exposure((256, 256))
    f = registry_formatter("fits_exposure")
    path = tmp_path / "calexp.fits"
    f.write(exp, path)
    data = bytearray(path.read_bytes())
    with fits.open(path) as hdul:
        hdul.readall()
    # Truncate the file after the IMAGE header: pixels of every plane are gone.
    image_data_start = 2880 * 2  # primary header (1 block) + IMAGE header (at most 2 blocks)
    with fits.open(path) as hdul:
        image_data_start = hdul["IMAGE"].fileinfo()["datLoc"]
    path.write_bytes(bytes(data[:image_data_start]))
    wcs = f.read(path, SCF.get("Wcs"), "wcs")
    np.testing.assert_allclose(wcs.wcs.crval, [150.0, 2.0])
    with pytest.raises(FormatterError):
        f.read(path, SCF.get("Exposure"))


@pytest.mark.parametrize("options", [{}, {"compression": "GZIP_2", "quantize_level": 0}])
def test_exposure_bbox_cutout_matches_full_read(tmp_path: Path, options: dict) -> None:
    exp = make_exposure((300, 400))
    f = registry_formatter("fits_exposure", options)
    path = tmp_path / "calexp.fits"
    f.write(exp, path)
    box = Box(x_min=37, y_min=120, x_max=87, y_max=170)
    cut = f.read(path, SCF.get("Exposure"), parameters={"bbox": box})
    assert cut.image.shape == (50, 50)
    np.testing.assert_array_equal(cut.image, exp.image[120:170, 37:87])
    np.testing.assert_array_equal(cut.mask, exp.mask[120:170, 37:87])
    assert cut.origin == (37, 120)
    # The cutout's WCS maps its pixel (0, 0) where the parent maps (37, 120).
    np.testing.assert_allclose(cut.wcs.pixel_to_world_values(0, 0), exp.wcs.pixel_to_world_values(37, 120))
    plane = f.read(path, SCF.get("NumpyArray"), "image", {"bbox": (37, 120, 87, 170)})
    np.testing.assert_array_equal(plane, exp.image[120:170, 37:87])
    assert plane.dtype == np.float32 and plane.dtype.byteorder in ("=", "|", "<")


def test_bbox_outside_image_is_an_error(tmp_path: Path) -> None:
    f = registry_formatter("fits_exposure")
    path = tmp_path / "calexp.fits"
    f.write(make_exposure((40, 40)), path)
    with pytest.raises(ValueError):
        f.read(path, SCF.get("Exposure"), parameters={"bbox": Box(30, 30, 50, 50)})


def test_cutout_reads_only_what_it_needs(tmp_path: Path) -> None:
    """REQ-0033: a 50×50 cutout of a 2k×2k exposure reads the cutout's pixels and the headers, not the plane."""
    shape = (2048, 2048)
    image = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape)
    f = registry_formatter("fits_exposure")
    path = tmp_path / "big.fits"
    f.write(Exposure(image=image), path)
    sc = SCF.get("NumpyArray")
    plane_bytes = image.nbytes  # 16 MiB
    cut, n_cut = bytes_read_by(lambda: f.read(path, sc, "image", {"bbox": Box(1000, 1000, 1050, 1050)}))
    np.testing.assert_array_equal(cut, image[1000:1050, 1000:1050])
    # 10 kB of pixels plus a few header blocks per HDU; the plane is 16 MiB
    assert 50 * 50 * 4 <= n_cut <= 50 * 50 * 4 + 64 * 1024, n_cut
    cutout, n_exposure_cut = bytes_read_by(lambda: f.read(path, SCF.get("Exposure"),
                                                          parameters={"bbox": Box(1000, 1000, 1050, 1050)}))
    np.testing.assert_array_equal(cutout.image, image[1000:1050, 1000:1050])
    assert n_exposure_cut <= 3 * 50 * 50 * 4 + 256 * 1024, n_exposure_cut  # three planes' pixels + headers
    full, n_full = bytes_read_by(lambda: f.read(path, SCF.get("Exposure")))
    np.testing.assert_array_equal(full.image, image)
    assert n_full >= plane_bytes  # the counter does see a whole-plane read


def test_cutout_of_a_truncated_file_is_an_error(tmp_path: Path) -> None:
    f = registry_formatter("fits_exposure")
    path = tmp_path / "cut-short.fits"
    f.write(Exposure(image=np.ones((512, 512), np.float32)), path)
    with open(path, "r+b") as fh:  # keep the headers' promise of 512 rows, lose the pixels of the last ones
        fh.truncate(path.stat().st_size - 300 * 512 * 4)
    with pytest.raises(FormatterError, match="truncated"):
        f.read(path, SCF.get("NumpyArray"), "variance", {"bbox": Box(0, 500, 10, 510)})


def test_tile_compression_option_is_applied(tmp_path: Path) -> None:
    """REQ-0060: writer options from configuration, e.g. FITS tile compression."""
    exp = Exposure(image=np.zeros((256, 256), np.float32))
    plain, packed = tmp_path / "plain.fits", tmp_path / "packed.fits"
    registry_formatter("fits_exposure").write(exp, plain)
    registry_formatter("fits_exposure", {"compression": "GZIP_2", "quantize_level": 0}).write(exp, packed)
    assert packed.stat().st_size * 10 < plain.stat().st_size
    with fits.open(packed) as hdul:
        assert isinstance(hdul["IMAGE"], fits.CompImageHDU)
        assert hdul["IMAGE"].compression_type == "GZIP_2"
    with fits.open(packed, disable_image_compression=True) as raw:  # what is on disk: the binary table's keyword
        assert raw["IMAGE"].header["ZCMPTYPE"] == "GZIP_2"
    back = registry_formatter("fits_exposure").read(packed, SCF.get("Exposure"))
    np.testing.assert_array_equal(back.image, exp.image)


def test_unknown_option_and_compression_are_rejected() -> None:
    with pytest.raises(UnsupportedParameterError):
        registry_formatter("fits_exposure", {"colour": "blue"})
    with pytest.raises(UnsupportedParameterError):
        registry_formatter("fits_exposure", {"compression": "ZIP_99"})


def make_table() -> Table:
    return Table(
        {"id": np.arange(5, dtype=np.int64), "ra": np.linspace(0, 1, 5), "flag": np.array([True, False] * 2 + [True])}
    )


@pytest.mark.parametrize("name", ["fits_table", "parquet"])
def test_table_round_trip_and_columns(tmp_path: Path, name: str) -> None:
    """REQ-0062 (FITS tables) and Parquet; read as astropy or pyarrow from the same bytes."""
    t = make_table()
    f = registry_formatter(name)
    path = tmp_path / f"t{f.extension}"
    f.write(t, path)
    back = f.read(path, SCF.get("AstropyTable"))
    assert isinstance(back, Table)
    for col in t.colnames:
        np.testing.assert_array_equal(back[col], t[col])
    arrow = f.read(path, SCF.get("ArrowTable"))
    assert isinstance(arrow, pa.Table) and arrow.num_rows == 5
    sub = f.read(path, SCF.get("AstropyTable"), parameters={"columns": ["ra"]})
    assert sub.colnames == ["ra"]
    np.testing.assert_array_equal(f.read(path, SCF.get("NumpyArray"), "id"), t["id"])
    with pytest.raises(UnsupportedComponentError):
        f.read(path, SCF.get("AstropyTable"), parameters={"columns": ["nope"]})


def test_parquet_writes_pyarrow_tables(tmp_path: Path) -> None:
    t = pa.table({"a": [1, 2, 3]})
    f = registry_formatter("parquet")
    f.write(t, tmp_path / "x.parq")
    assert f.read(tmp_path / "x.parq", SCF.get("ArrowTable")).equals(t)


@pytest.mark.parametrize("name", ["json", "yaml"])
def test_structured_round_trip(tmp_path: Path, name: str) -> None:
    data = {"a": 1, "b": [1.5, "x"], "c": {"d": None}}
    f = registry_formatter(name)
    path = tmp_path / f"d{f.extension}"
    f.write(data, path)
    assert f.read(path, SCF.get("StructuredDataDict")) == data
    assert f.read(path, SCF.get("StructuredDataDict"), "b") == [1.5, "x"]
    with pytest.raises(UnsupportedComponentError):
        f.read(path, SCF.get("StructuredDataDict"), "zz")


def test_json_rejects_unserializable(tmp_path: Path) -> None:
    with pytest.raises(FormatterError):
        registry_formatter("json").write({"x": object()}, tmp_path / "x.json")
    with pytest.raises(FormatterError):
        registry_formatter("json").write({"x": float("nan")}, tmp_path / "y.json")


def test_numpy_round_trip_and_bbox(tmp_path: Path) -> None:
    a = np.arange(100 * 120, dtype=np.float64).reshape(100, 120)
    f = registry_formatter("numpy")
    f.write(a, tmp_path / "a.npy")
    np.testing.assert_array_equal(f.read(tmp_path / "a.npy", SCF.get("NumpyArray")), a)
    cut = f.read(tmp_path / "a.npy", SCF.get("NumpyArray"), parameters={"bbox": Box(10, 20, 30, 25)})
    np.testing.assert_array_equal(cut, a[20:25, 10:30])
    with pytest.raises(FormatterError):
        f.write(np.array([object()]), tmp_path / "o.npy")


def test_avro_round_trip_inferred_and_explicit_schema(tmp_path: Path) -> None:
    records = [{"id": 1, "flux": 2.5, "name": "a", "note": None}, {"id": 2, "flux": 3.5, "name": "b", "note": "x"}]
    f = registry_formatter("avro")
    f.write(records, tmp_path / "r.avro")
    assert f.read(tmp_path / "r.avro", SCF.get("AvroRecords")) == records
    schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "int"}]}
    g = registry_formatter("avro", {"schema": schema, "codec": "null"})
    g.write([{"id": 7}], tmp_path / "s.avro")
    assert g.read(tmp_path / "s.avro", SCF.get("AvroRecords")) == [{"id": 7}]
    with pytest.raises(FormatterError):
        g.write([{"id": "not an int"}], tmp_path / "bad.avro")


@pytest.mark.parametrize("options", [{}, {"compression": "RICE_1"}])
def test_fits_image_round_trip_and_bbox(tmp_path: Path, options: dict) -> None:
    """REQ-0061: an in-memory image written as FITS, read whole or as a cutout."""
    a = np.arange(64 * 48, dtype=np.int32).reshape(64, 48)
    f = registry_formatter("fits_image", options)
    f.write(a, tmp_path / "i.fits")
    np.testing.assert_array_equal(f.read(tmp_path / "i.fits", SCF.get("NumpyArray")), a)
    cut = f.read(tmp_path / "i.fits", SCF.get("NumpyArray"), parameters={"bbox": Box(3, 4, 13, 9)})
    np.testing.assert_array_equal(cut, a[4:9, 3:13])
    with fits.open(tmp_path / "i.fits") as hdul:
        assert hdul[1].name == "IMAGE"


def test_wcs_and_header_formatters(tmp_path: Path) -> None:
    w = make_wcs((10, 10))
    registry_formatter("fits_wcs").write(w, tmp_path / "w.fits")
    back = registry_formatter("fits_wcs").read(tmp_path / "w.fits", SCF.get("Wcs"))
    np.testing.assert_allclose(back.wcs.crval, w.wcs.crval)
    h = fits.Header({"AIRMASS": 1.2})
    registry_formatter("fits_header").write(h, tmp_path / "h.fits")
    assert registry_formatter("fits_header").read(tmp_path / "h.fits", SCF.get("Header"))["AIRMASS"] == 1.2


def test_formatter_selected_by_configuration() -> None:
    """REQ-0025: dataset type entry wins over storage class entry, which wins over the default."""
    factory = FormatterFactory({
        "storage_classes": {"AstropyTable": "parquet"},
        "dataset_types": {"calexp": {"formatter": "fits_exposure", "options": {"compression": "RICE_1"}}},
    })
    calexp = DatasetType("calexp", ["visit"], "Exposure")
    assert factory.spec_for(calexp) == FormatterSpec("fits_exposure", {"compression": "RICE_1"})
    assert factory.spec_for(DatasetType("calexp.wcs", ["visit"], "Exposure")).name == "fits_exposure"
    assert factory.spec_for(DatasetType("src", ["visit"], "AstropyTable")).name == "parquet"
    assert factory.spec_for(DatasetType("raw", ["visit"], "Exposure")) == FormatterSpec("fits_exposure")
    with pytest.raises(FormatterNotFoundError):
        factory.spec_for(DatasetType("x", ["visit"], "NoSuchClass"))
    assert factory.create(factory.spec_for(calexp)).options == {"compression": "RICE_1"}


def test_registry_lazy_import_and_install_hint() -> None:
    reg = FormatterRegistry()
    reg.register("hdf5", "nightshift_no_such_h5_module:Hdf5Formatter", requires="h5py")
    assert "hdf5" in reg.names()  # registering imports nothing
    with pytest.raises(FormatterDependencyError, match="pip install h5py"):
        reg.get("hdf5")
    with pytest.raises(FormatterNotFoundError):
        reg.get("nope")
    assert reg.get("nightshift.butler.formatters._plain:JsonFormatter").name == "json"
    with pytest.raises(FormatterNotFoundError):
        reg.get("nightshift.butler.formatters._exposure:Box")  # not a Formatter


def test_exported_members_match_all() -> None:
    import nightshift.butler.datastores as ds
    import nightshift.butler.formatters as fm

    for mod in (fm, ds):
        public = {n for n in dir(mod) if not n.startswith("_")}
        assert public - {"annotations"} >= set(mod.__all__)
        assert all(hasattr(mod, n) for n in mod.__all__)


class _LinesFormatter(Formatter):
    """A new format written only as ``_read``: the shared checks and error wrapping come from the base."""

    name = "lines"
    extension = ".txt"
    read_components = frozenset({"first"})

    def write(self, obj: list[str], path: Path) -> None:  # type: ignore[override]  # this format holds lines only
        path.write_text("\n".join(obj))

    def _read(self, path: Path, storage_class: object, component: str | None, parameters: dict[str, object]) -> object:
        lines = path.read_text().splitlines()
        return lines[0] if component == "first" else lines


def test_formatter_read_template_checks_and_wraps(tmp_path: Path) -> None:
    """Every formatter gets the same read preamble: parameters, components, library errors as FormatterError."""
    f = _LinesFormatter()
    path = tmp_path / "x.txt"
    f.write(["a", "b"], path)
    sc = SCF.get("StructuredDataList")
    assert f.read(path, sc) == ["a", "b"]
    assert f.read(path, sc, "first") == "a"
    with pytest.raises(UnsupportedParameterError, match=r"lines cannot apply parameter\(s\) \['bbox'\]"):
        f.read(path, sc, parameters={"bbox": (0, 0, 1, 1)})
    with pytest.raises(UnsupportedComponentError, match=r"no component 'last'.*\['first'\]"):
        f.read(path, sc, "last")
    with pytest.raises(FormatterError, match="cannot read dataset from") as info:
        f.read(tmp_path / "missing.txt", sc)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_read_stream_is_the_same_template(tmp_path: Path) -> None:
    """Ranged reads (WebDAV) go through the shared checks and the format's _read; other formats refuse a stream."""
    exp = make_exposure()
    f = registry_formatter("fits_exposure")
    f.write(exp, tmp_path / "e.fits")
    sc = SCF.get("NumpyArray")
    with open(tmp_path / "e.fits", "rb") as stream:
        cut = f.read_stream(stream, sc, "image", {"bbox": (3, 4, 13, 9)})  # a tuple: coerced to a Box
        np.testing.assert_array_equal(cut, exp.image[4:9, 3:13])
        with pytest.raises(UnsupportedParameterError, match=r"cannot apply parameter\(s\) \['columns'\]"):
            f.read_stream(stream, sc, "image", {"columns": ["a"]})
        with pytest.raises(UnsupportedComponentError, match="no component 'nope'"):
            f.read_stream(stream, sc, "nope")
    a = np.arange(20 * 10, dtype=np.int32).reshape(20, 10)
    img = registry_formatter("fits_image")
    img.write(a, tmp_path / "i.fits")
    with open(tmp_path / "i.fits", "rb") as stream:
        np.testing.assert_array_equal(img.read_stream(stream, sc, parameters={"bbox": Box(1, 2, 5, 7)}), a[2:7, 1:5])
    _LinesFormatter().write(["a"], tmp_path / "x.txt")
    with open(tmp_path / "x.txt", "rb") as stream, pytest.raises(NotImplementedError, match="reads local files only"):
        _LinesFormatter().read_stream(stream, SCF.get("StructuredDataList"))
