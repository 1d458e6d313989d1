"""WebDAV cutout benchmark: bytes and requests a cutout, a component and a full read transfer.

Writes one exposure (``--size`` pixels square, image + mask + variance) to the
local stack's WebDAV server (``DAV_ENDPOINT``/``DAV_TOKEN`` from ``nightshift dev
env``), then reads a ``--box`` pixel square cutout, the WCS component and the
whole dataset, counting body bytes received and requests made
(``DavBackend.stats``) and wall time. Prints JSON and a one-line summary.

Example::

    eval "$(.venv/bin/nightshift dev env)"
    .venv/bin/python loadtests/dav_cutout_bench.py --size 1024 --box 32
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

import numpy as np
from astropy.wcs import WCS

from nightshift.butler import DatasetRef, DatasetType
from nightshift.butler.datastores import DavBackend, FileDatastore
from nightshift.butler.formatters import Box, Exposure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--endpoint", default=os.environ.get("DAV_ENDPOINT", "dav://127.0.0.1:19080"))
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    shape = (args.size, args.size)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [args.size / 2, args.size / 2]
    wcs.wcs.cdelt = [-5.5e-5, 5.5e-5]
    exp = Exposure(image=rng.normal(100, 5, shape).astype(np.float32), mask=np.zeros(shape, np.int32),
                   variance=np.full(shape, 25.0, np.float32), wcs=wcs)
    ref = DatasetRef(DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure"),
                     {"instrument": "Cam", "visit": 1, "detector": 1}, "bench")
    backend = DavBackend(f"{args.endpoint}/dav-bench-{uuid.uuid4().hex[:8]}")
    ds = FileDatastore(backend)
    ds.put(exp, ref)
    size = ds.record(ref).size
    x0 = args.size // 3
    reads = {
        "cutout": lambda: ds.get(ref, parameters={"bbox": Box(x0, x0, x0 + args.box, x0 + args.box)}),
        "wcs": lambda: ds.get(ref.make_component_ref("wcs")),
        "full": lambda: ds.get(ref),
    }
    out: dict[str, object] = {"file_bytes": size, "size": args.size, "box": args.box}
    for name, read in reads.items():
        r0, b0, t0 = backend.stats.requests, backend.stats.bytes_received, time.perf_counter()
        read()
        out[name] = {"bytes": backend.stats.bytes_received - b0, "requests": backend.stats.requests - r0,
                     "seconds": round(time.perf_counter() - t0, 4)}
    print(json.dumps(out, indent=2))
    c = out["cutout"]
    assert isinstance(c, dict)
    print(f"dav cutout {args.box}x{args.box} of {args.size}x{args.size}: {c['bytes']} of {size} bytes "
          f"({100 * c['bytes'] / size:.2f} %) in {c['requests']} requests, {c['seconds']} s")


if __name__ == "__main__":
    main()
