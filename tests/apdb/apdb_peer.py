"""A second and third process for the APDB round-trip test (REQ-0028): a writer and a reader SuperTask.

Settings come from the environment (``NIGHTSHIFT_APDB_DSN``, ``NIGHTSHIFT_APDB_SCHEMA_NAME``), the
rows from :class:`nightshift.apdb.SkyField` with its defaults, so the test can compute what to expect.

``python apdb_peer.py write I``: store visit ``I``, print ``{"stored": ...}`` and exit.
``python apdb_peer.py preload I``: connect, print ``{"ready": true}``, wait for a line on stdin, then
preload the field of visit ``I`` (12 months of history) and print the ids found.
"""

from __future__ import annotations

import asyncio
import json
import sys

from nightshift.apdb import ApdbSettings, AsyncApdb, SkyField


async def write(i: int) -> dict[str, object]:
    v = SkyField().visit(i)
    async with AsyncApdb(ApdbSettings()) as apdb:  # settings from the environment
        r = await apdb.store(v.mjd, v.objects, v.sources, v.forced_sources)
    return {"stored": {"visit": v.visit, "dia_objects": r.dia_objects, "dia_sources": r.dia_sources}}


async def preload(i: int) -> dict[str, object]:
    sky = SkyField()
    async with AsyncApdb(ApdbSettings()) as apdb:  # settings from the environment
        await apdb.layout()
        print(json.dumps({"ready": True}), flush=True)
        if not await asyncio.to_thread(sys.stdin.readline):
            raise SystemExit("stdin closed before the go line")
        pre = await apdb.preload(sky.region(i), sky.history_start(i))
    return {
        "object_ids": pre.objects["diaObjectId"].to_pylist(),
        "source_ids": pre.sources["diaSourceId"].to_pylist(),
        "source_visits": sorted(set(pre.sources["visit"].to_pylist())),
        "forced_object_ids": pre.forced_sources["diaObjectId"].to_pylist(),
    }


def main() -> None:
    role, i = sys.argv[1], int(sys.argv[2])
    result = asyncio.run(write(i) if role == "write" else preload(i))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
