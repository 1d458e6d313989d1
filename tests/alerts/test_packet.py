"""Alerts from APDB tables: byte-identical to fastavro on the same records, strict decoding, bad rows."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightshift.alerts import (
    AlertEncoder,
    AlertSchema,
    AlertSchemaError,
    Cutouts,
    EncodedCache,
    frame,
    shipped_versions,
    unframe,
)
from nightshift.apdb import SkyField, simulate_visit

from ._reference import reference_alerts


def fastavro_bytes(schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def strict_decode(schema: AlertSchema, body: bytes) -> dict[str, Any]:
    buf = io.BytesIO(body)
    record = fastavro.schemaless_reader(buf, schema.parsed)
    assert buf.tell() == len(body), "the alert has trailing bytes"
    assert isinstance(record, dict)
    return record


@st.composite
def field_histories(draw: st.DrawFn) -> dict[str, Any]:
    """A few objects with 0..40 previous sources and forced sources, special values injected."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_obj = draw(st.integers(1, 4))
    depth = draw(st.lists(st.integers(0, 40), min_size=n_obj, max_size=n_obj))
    null_fraction = draw(st.sampled_from([0.0, 0.3, 1.0]))
    rng = np.random.default_rng(seed)
    obj_ids = np.arange(1, n_obj + 1) * 7
    ra, dec = rng.random(n_obj) * 360, rng.random(n_obj) * 10
    mjd = 60500.0
    src_hist, forced_hist = [], []
    for k in range(max(depth, default=0)):
        who = np.flatnonzero(np.asarray(depth) > k)
        t = mjd - 1 - k * 12.5  # some rows fall outside the 12-month window
        _, s, f = simulate_visit(100 + k, t, ra[who], dec[who], obj_ids[who], rng=rng, null_fraction=null_fraction)
        src_hist.append(s)
        forced_hist.append(f)
    objects, sources, _ = simulate_visit(500, mjd, ra, dec, obj_ids, rng=rng, null_fraction=null_fraction)
    # Special values in the new sources: NaN, infinities, extreme ints, unicode.
    specials = draw(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=n_obj, max_size=n_obj))
    sources = sources.set_column(sources.schema.get_field_index("psfFlux"), "psfFlux", pa.array(specials, pa.float32()))
    text = draw(st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=n_obj, max_size=n_obj))
    sources = sources.set_column(sources.schema.get_field_index("reliabilityVersion"), "reliabilityVersion",
                                 pa.array(text, pa.string()))
    big = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n_obj, max_size=n_obj))
    sources = sources.set_column(sources.schema.get_field_index("parentDiaSourceId"), "parentDiaSourceId",
                                 pa.array(big, pa.int64()))
    with_cutouts = draw(st.booleans())
    cutouts = [Cutouts(draw(st.binary(max_size=300)), None, b"\x00" * draw(st.integers(0, 200)))
               for _ in range(n_obj)] if with_cutouts else None
    return {
        "sources": sources,
        "objects": objects,
        "preload": (None, pa.concat_tables(src_hist) if src_hist else None,
                    pa.concat_tables(forced_hist) if forced_hist else None),
        "cutouts": cutouts,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(field_histories())
def test_alerts_are_byte_identical_to_fastavro(case: dict[str, Any]) -> None:
    enc = AlertEncoder()
    batch = enc.build(case["sources"], case["objects"], preload=case["preload"], cutouts=case["cutouts"])
    assert batch.bad == []
    expected = reference_alerts(case["sources"], case["objects"], case["preload"], case["cutouts"])
    assert len(batch) == len(expected)
    parsed = enc.schema.parsed
    for body, record in zip(batch.payloads, expected, strict=True):
        assert body == fastavro_bytes(parsed, record)
        decoded = strict_decode(enc.schema, body)
        assert decoded["diaSourceId"] == record["diaSourceId"]


def test_a_visit_of_the_sky_simulator() -> None:
    """Coherent histories: visit 30 of a field sees the earlier visits' sources of its objects."""
    sky = SkyField(centres=1, density=400, sources_per_visit=600, forced_per_visit=600, cadence_days=7.0)
    visits = [sky.visit(i) for i in range(31)]
    v = visits[-1]
    pre_src = pa.concat_tables([x.sources for x in visits[:-1]])
    pre_forced = pa.concat_tables([x.forced_sources for x in visits[:-1]])
    objects_hist = pa.concat_tables([x.objects for x in visits[:-1]][::-1])  # newest first, as a preload has one
    objects_hist = objects_hist.append_column("validityStartMjdTai", pa.array(np.zeros(objects_hist.num_rows)))
    preload = (objects_hist, pre_src, pre_forced)
    enc = AlertEncoder()
    batch = enc.build(v.sources, v.objects, preload=preload)
    assert len(batch) == v.sources.num_rows and batch.bad == []
    expected = reference_alerts(v.sources, v.objects, preload, None)
    longest = 0
    for body, record in zip(batch.payloads, expected, strict=True):
        assert body == fastavro_bytes(enc.schema.parsed, record)
        decoded = strict_decode(enc.schema, body)
        prv = decoded["prvDiaSources"] or []
        longest = max(longest, len(prv))
        assert all(p["diaObjectId"] == decoded["diaSource"]["diaObjectId"] for p in prv)
        assert all(v.mjd - 365 <= p["midpointMjdTai"] < v.mjd for p in prv)
        assert decoded["diaObject"]["diaObjectId"] == decoded["diaSource"]["diaObjectId"]
        assert decoded["ssSource"] is None and decoded["mpc_orbits"] is None
    assert longest >= 3  # the field really has histories
    assert batch.visits.tolist() == [v.visit] * len(batch)


def test_astropy_tables_are_accepted() -> None:
    sky = SkyField(centres=1, density=200, sources_per_visit=20, forced_per_visit=20)
    v = sky.visit(0)
    a = AlertEncoder().build(_astropy(v.sources), v.objects)
    b = AlertEncoder().build(v.sources, v.objects)
    assert a.payloads == b.payloads


def _astropy(table: pa.Table) -> Table:
    out = Table()
    for name in table.column_names:
        col = table.column(name)
        arr = col.to_numpy(zero_copy_only=False)
        if col.null_count:
            mask = col.is_null().to_numpy(zero_copy_only=False)
            fill = "" if pa.types.is_string(col.type) else 0
            arr = np.ma.masked_array(np.where(mask, fill, arr).astype(arr.dtype if arr.dtype != object else str),
                                     mask=mask)
        out[name] = arr
    return out


def test_bad_rows_are_reported_and_the_others_built() -> None:
    sky = SkyField(centres=1, density=300, sources_per_visit=30, forced_per_visit=30)
    v0, v1 = sky.visit(0), sky.visit(3)
    src = v1.sources
    ids = src.column("diaSourceId").to_pylist()
    # Row 2: a required field is null. Row 5: an int out of range for Avro int.
    psf_ndata = src.column("psfNdata").to_pylist()
    psf_ndata[2] = None
    src = src.set_column(src.schema.get_field_index("psfNdata"), "psfNdata", pa.array(psf_ndata, pa.int32()))
    bbox = src.column("bboxSize").to_pylist()
    bbox[5] = 2**40
    src = src.set_column(src.schema.get_field_index("bboxSize"), "bboxSize", pa.array(bbox, pa.int64()))
    # A history row of object X whose required 'visit' is null: the alert of X is reported, naming that row.
    obj = src.column("diaObjectId").to_pylist()
    hist = simulate_visit(7, v1.mjd - 10, [1.0], [1.0], [obj[9]], rng=1)[1]
    hist = hist.set_column(hist.schema.get_field_index("visit"), "visit", pa.array([None], pa.int64()))
    batch = AlertEncoder().build(src, v1.objects, preload=(None, pa.concat_tables([v0.sources, hist]), None))
    got = {b.dia_source_id: (b.field, b.reason) for b in batch.bad}
    hist_id = hist.column("diaSourceId")[0].as_py()
    assert got == {
        ids[2]: ("diaSource.psfNdata", "required field is null"),
        ids[5]: ("diaSource.bboxSize", "value out of range for Avro int [-2147483648, 2147483647]"),
        ids[9]: (f"prvDiaSources[diaSourceId={hist_id}].visit", "required field is null"),
    }
    assert len(batch) == src.num_rows - 3
    assert set(batch.dia_source_ids.tolist()) == set(ids) - {ids[2], ids[5], ids[9]}
    for body in batch.payloads:
        strict_decode(batch.schema, body)
    assert all(b.visit == v1.visit for b in batch.bad)


def test_every_shipped_schema_loads_and_the_default_is_the_latest() -> None:
    versions = shipped_versions()
    assert (11, 1) in versions and AlertSchema.load().version == "{}.{}".format(*max(versions))
    for major, minor in versions:
        s = AlertSchema.load((major, minor))
        assert s.schema_id == major * 100 + minor
        assert "__fastavro" not in s.json()
    with pytest.raises(AlertSchemaError, match="ships no alert schema 2.0"):
        AlertSchema.load("2.0")


def test_an_older_schema_version_can_be_chosen() -> None:
    sky = SkyField(centres=1, density=200, sources_per_visit=20, forced_per_visit=20)
    v = sky.visit(0)
    enc = AlertEncoder("11.0")
    batch = enc.build(v.sources, v.objects)
    assert enc.schema.schema_id == 1100 and len(batch) == 20
    for body in batch.payloads:
        strict_decode(enc.schema, body)


def test_framing_is_confluent() -> None:
    body = b"avro"
    msg = frame(1101, body)
    assert msg == b"\x00\x00\x00\x04\x4d" + body
    assert unframe(msg) == (1101, body)
    with pytest.raises(ValueError, match="magic byte|start with byte 0"):
        unframe(b"\x01\x00\x00\x04\x4dxx")


def test_the_cache_reuses_encoded_sources_and_changes_no_byte() -> None:
    """Visit after visit, history rows come from the cache (encoded once, when new); the bytes are the same."""
    sky = SkyField(centres=1, density=300, sources_per_visit=200, forced_per_visit=200, cadence_days=5.0)
    cached = AlertEncoder(cache=EncodedCache())
    plain = AlertEncoder()
    seen: list[Any] = []
    for i in range(6):
        v = sky.visit(i)
        preload = (None, pa.concat_tables([x.sources for x in seen]) if seen else None,
                   pa.concat_tables([x.forced_sources for x in seen]) if seen else None)
        a = cached.build(v.sources, v.objects, preload=preload, forced_sources=v.forced_sources)
        b = plain.build(v.sources, v.objects, preload=preload, forced_sources=v.forced_sources)
        assert a.payloads == b.payloads
        seen.append(v)
    assert cached.cache is not None
    assert cached.cache.hits > 0 and cached.cache.misses == 0  # every history row was cached when it was new
