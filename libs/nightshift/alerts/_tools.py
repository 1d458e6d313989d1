"""Reading alerts: decode a message, summarise it in one line, write its Avro, JSON, FITS and a PNG."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

from ._archive import container_file
from ._errors import AlertSchemaError
from ._packet import unframe
from ._schema import AlertSchema

__all__ = ["alert_json", "cutouts_png", "decode_alert", "read_alert_file", "summary_line", "write_alert_files"]

_CUTOUTS = ("cutoutDifference", "cutoutScience", "cutoutTemplate")
_MJD_UNIX0 = 40587.0  # MJD of 1970-01-01
_TAI_UTC = 37.0  # seconds, since 2017


def decode_alert(message: bytes) -> tuple[AlertSchema, dict[str, Any]]:
    """(schema, record) of a Confluent-framed alert; the id names a bundled schema (``MAJOR*100+MINOR``).

    Raises
    ------
    AlertSchemaError
        The id is not a shipped alert schema, or the body does not decode to its end.
    """
    schema_id, body = unframe(message)
    schema = AlertSchema.load((schema_id // 100, schema_id % 100))
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, schema.parsed)
    except Exception as exc:  # fastavro raises EOFError, ValueError, ... on corrupt bodies
        raise AlertSchemaError(f"the alert does not decode with schema {schema.version}: {exc}") from exc
    if buf.tell() != len(body):
        raise AlertSchemaError(f"the alert has {len(body) - buf.tell()} bytes beyond schema {schema.version}'s record")
    if not isinstance(record, dict):  # pragma: no cover - an alert schema is a record
        raise AlertSchemaError("the alert is not a record")
    return schema, record


def summary_line(record: dict[str, Any], now: float | None = None) -> str:
    """One line: id, ra/dec, band, PSF flux and S/N, reliability, age since the exposure midpoint."""
    s = record["diaSource"]
    flux, err = s.get("psfFlux"), s.get("psfFluxErr")
    snr = flux / err if flux is not None and err not in (None, 0) else float("nan")
    age = (now if now is not None else time.time()) - ((s["midpointMjdTai"] - _MJD_UNIX0) * 86400 - _TAI_UTC)
    rel = s.get("reliability")
    return (
        f"{record['diaSourceId']:>20d}  ra={s['ra']:10.6f} dec={s['dec']:+10.6f}  {s.get('band') or '?'}  "
        f"psfFlux={_num(flux)} nJy  S/N={_num(snr, 6, 1)}  rel={_num(rel, 5, 2)}  age={_age(age)}"
    )


def _num(v: float | None, width: int = 10, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-".rjust(width)
    return f"{v:{width}.{digits}f}"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def alert_json(record: dict[str, Any]) -> dict[str, Any]:
    """The record with cutout bytes replaced by their sizes (base64 elsewhere) and NaN as null: JSON-safe."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, bytes):
            return {"bytes": len(v), "base64": base64.b64encode(v).decode()}
        return v

    out: dict[str, Any] = clean(record)
    return out


def cutouts_png(record: dict[str, Any], path: str | Path) -> Path:
    """Write the three cutouts side by side (difference, science, template) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from astropy.nddata import CCDData

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, name in zip(axes, _CUTOUTS, strict=True):
        data = record.get(name)
        ax.set_title(name.removeprefix("cutout"))
        ax.set_xticks([])
        ax.set_yticks([])
        if not data:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            continue
        img = np.asarray(CCDData.read(io.BytesIO(data), format="fits").data, dtype=float)
        lo, hi = np.nanpercentile(img, [1, 99]) if np.isfinite(img).any() else (0.0, 1.0)
        ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    fig.suptitle(f"diaSourceId {record['diaSourceId']}")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_alert_files(schema: AlertSchema, body: bytes, record: dict[str, Any], directory: str | Path) -> list[Path]:
    """``{id}.avro`` (container file), ``{id}.json`` and ``{id}.{cutout}.fits`` of one alert in ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ident = record["diaSourceId"]
    data, _, _ = container_file(schema, [body])
    paths = [d / f"{ident}.avro", d / f"{ident}.json"]
    paths[0].write_bytes(data)
    doc = alert_json({k: v for k, v in record.items() if k not in _CUTOUTS})
    paths[1].write_text(json.dumps(doc, indent=1))
    for name in _CUTOUTS:
        if record.get(name):
            p = d / f"{ident}.{name}.fits"
            p.write_bytes(record[name])
            paths.append(p)
    return paths


def read_alert_file(path: str | Path) -> Iterator[tuple[AlertSchema, dict[str, Any]]]:
    """Alerts of a file: an Avro container file, or one Confluent-framed message."""
    raw = Path(path).read_bytes()
    if raw[:4] == b"Obj\x01":
        reader = fastavro.reader(io.BytesIO(raw))
        name = str(reader.writer_schema.get("name", "")) if isinstance(reader.writer_schema, dict) else ""
        m = re.search(r"v(\d+)_(\d+)", name)
        schema = AlertSchema.load((int(m.group(1)), int(m.group(2)))) if m else AlertSchema.load()
        for rec in reader:
            if isinstance(rec, dict):
                yield schema, rec
        return
    yield decode_alert(raw)
