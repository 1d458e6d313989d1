"""The observatory side of a simulated night: ``nextVisit`` ahead of each exposure, its raws at the exposure end.

:func:`load_night` reads what ``nightshift sim night`` wrote (``night.json``,
``next_visit.jsonl``, ``raw/<day_obs>/<seq>/``). :func:`trigger_schedule`
turns it into timed steps: each visit's ``nextVisit`` ``lead_s`` seconds
before the exposure starts and its raws when the exposure ends, on the
simulated clock or on a regular ``cadence_s``, compressed by ``speed``.
:func:`run_trigger` plays the steps in real time: it produces each
``nextVisit`` (keyed ``"{instrument}/{visit}"``) and drops each visit's raws
into a directory or an S3 prefix (:class:`RawDropper`, atomically), and with
``announce`` also produces their ``raw.arrived`` itself instead of leaving that
to the raw watcher.

The ``nextVisit`` payloads keep the simulator's clock (``issued_at`` is
``lead_s`` before the exposure the raws' headers describe), so timings
derived from the raws and from the events agree.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import ObsError

if TYPE_CHECKING:
    from ...events import AsyncProducer, NextVisit

__all__ = ["NightVisit", "RawDropper", "TriggerReport", "TriggerStep", "load_night", "run_trigger",
           "trigger_schedule"]

_TAI_UTC = timedelta(seconds=37)  # TAI - UTC since 2017


@dataclass(frozen=True)
class NightVisit:
    """One visit of a simulated night: its ``nextVisit`` payload, when its exposure starts, and its raws."""

    payload: dict[str, Any]
    begin: datetime  # UTC
    exposure_time_s: float
    raws: tuple[Path, ...]

    @property
    def visit(self) -> int:
        return int(self.payload["visit"])

    def next_visit(self) -> NextVisit:
        """The ``nextVisit`` event (``issued_at`` from the payload's microseconds)."""
        from ...events import NextVisit

        data = dict(self.payload)
        issued = data.get("issued_at")
        if isinstance(issued, (int, float)):
            data["issued_at"] = datetime.fromtimestamp(issued / 1e6, UTC)
        return NextVisit.model_validate(data)


def load_night(night_dir: str | os.PathLike[str]) -> list[NightVisit]:
    """The visits of a night written by ``nightshift sim night``, in exposure order.

    Raises
    ------
    ObsError
        ``night.json`` or ``next_visit.jsonl`` is missing or they disagree.
    """
    root = Path(night_dir)
    try:
        plan = json.loads((root / "night.json").read_text())
        payloads = [json.loads(line) for line in (root / "next_visit.jsonl").read_text().splitlines() if line]
    except FileNotFoundError as exc:
        raise ObsError(f"{root} is not a simulated night ({exc.filename} missing): write one with "
                       "`nightshift sim night`") from None
    by_visit = {int(p["visit"]): p for p in payloads}
    visits = []
    for obs in plan["observations"]:
        exposure = int(obs["day_obs"]) * 100_000 + int(obs["seq_num"])
        payload = by_visit.get(exposure)
        if payload is None:
            raise ObsError(f"{root}: visit {exposure} of night.json has no nextVisit in next_visit.jsonl")
        begin = datetime.fromisoformat(obs["begin"]).replace(tzinfo=UTC) - _TAI_UTC
        raw_dir = root / "raw" / str(obs["day_obs"]) / f"{int(obs['seq_num']):06d}"
        raws = tuple(sorted(raw_dir.glob("*.fits"))) if raw_dir.is_dir() else ()
        visits.append(NightVisit(payload, begin, float(obs["exposure_time"]), raws))
    visits.sort(key=lambda v: v.begin)
    return visits


@dataclass(frozen=True)
class TriggerStep:
    """Send ``nextVisit`` or drop raws, ``at_s`` seconds after the trigger starts."""

    at_s: float
    kind: Literal["nextVisit", "raws"]
    visit: NightVisit


def trigger_schedule(visits: Sequence[NightVisit], *, speed: float = 1.0, cadence_s: float | None = None,
                     lead_s: float = 20.0) -> list[TriggerStep]:
    """The steps of a night, in time order (a visit's ``nextVisit`` before its raws).

    Parameters
    ----------
    visits : sequence of NightVisit
    speed : float
        Time compression: 10 plays the night ten times faster.
    cadence_s : float, optional
        Start visits every ``cadence_s`` seconds (before compression) instead of at their simulated times
        (whose revisits are half an hour apart).
    lead_s : float
        How long before the exposure starts ``nextVisit`` is sent.
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0, not {speed!r}")
    if cadence_s is not None and not cadence_s > 0:
        raise ValueError(f"cadence must be > 0 seconds, not {cadence_s!r}")
    if not visits:
        return []
    first = visits[0].begin
    steps = []
    for i, v in enumerate(visits):
        begin = lead_s + (i * cadence_s if cadence_s is not None else (v.begin - first).total_seconds())
        steps.append(TriggerStep((begin - lead_s) / speed, "nextVisit", v))
        steps.append(TriggerStep((begin + v.exposure_time_s) / speed, "raws", v))
    order = {"nextVisit": 0, "raws": 1}
    return sorted(steps, key=lambda s: (s.at_s, order[s.kind]))


class RawDropper:
    """Put raws where the observatory's files appear: a directory (write aside, rename) or ``s3://bucket/prefix``.

    Parameters
    ----------
    target : str or path
    s3_client : botocore client, optional
        For an S3 target; one from ``$S3_ENDPOINT`` by default.
    """

    def __init__(self, target: str | os.PathLike[str], *, s3_client: Any = None) -> None:
        self.target = str(target)
        self.remote = self.target.startswith("s3://")
        if self.remote:
            self.bucket, _, prefix = self.target[len("s3://"):].partition("/")
            if not self.bucket:
                raise ObsError(f"drop target {self.target!r}: give s3://bucket/prefix")
            self.prefix = prefix.strip("/")
            if s3_client is None:
                import boto3

                s3_client = boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT"))
            self.s3 = s3_client
        else:
            Path(self.target).mkdir(parents=True, exist_ok=True)

    def drop(self, raw: Path) -> str:
        """Copy one raw to the target; returns its path or ``s3://`` URI there."""
        if self.remote:
            key = f"{self.prefix}/{raw.name}" if self.prefix else raw.name
            self.s3.upload_file(str(raw), self.bucket, key)
            return f"s3://{self.bucket}/{key}"
        dest = Path(self.target).absolute() / raw.name
        tmp = dest.with_name(f".{raw.name}.tmp")
        shutil.copyfile(raw, tmp)
        os.replace(tmp, dest)  # the watcher sees the whole file or none
        return str(dest)


@dataclass
class TriggerReport:
    """What :func:`run_trigger` sent: visits announced, raws dropped (and announced)."""

    next_visits: list[int] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    announced: int = 0


async def run_trigger(steps: Sequence[TriggerStep], producer: AsyncProducer, dropper: RawDropper, *,
                      topic_prefix: str = "", announce: bool = False, issued_now: bool = False,
                      on_step: Callable[[TriggerStep, float], None] | None = None) -> TriggerReport:
    """Play ``steps`` in real time (see the module docstring).

    Parameters
    ----------
    steps : sequence of TriggerStep
        From :func:`trigger_schedule`.
    producer : AsyncProducer
        Started.
    dropper : RawDropper
    topic_prefix : str
        Prefix of the ``nextVisit`` and ``raw.arrived`` topics.
    announce : bool
        Produce ``raw.arrived`` for each dropped raw (instead of relying on a raw watcher).
    issued_now : bool
        Stamp each ``nextVisit`` with the wall-clock time it is sent instead of the simulator's clock.
    on_step : callable, optional
        ``on_step(step, late_s)`` after each step (``late_s``: how far behind schedule it ran).
    """
    from ...events import encode
    from .._raw_events import describe_raw, raw_event_key

    report = TriggerReport()
    start = time.monotonic()
    for step in steps:
        delay = start + step.at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        late = max(0.0, time.monotonic() - start - step.at_s)
        v = step.visit
        if step.kind == "nextVisit":
            event = v.next_visit()
            if issued_now:
                event = event.model_copy(update={"issued_at": datetime.now(UTC)})
            await producer.send(topic_prefix + "nextVisit", encode(event), key=f"{event.instrument}/{event.visit}")
            report.next_visits.append(event.visit)
        else:
            for raw in v.raws:
                uri = await asyncio.to_thread(dropper.drop, raw)
                report.dropped.append(uri)
                if announce:
                    client = dropper.s3 if dropper.remote else None
                    for arrived in await asyncio.to_thread(describe_raw, uri, s3_client=client):
                        await producer.send(topic_prefix + "raw.arrived", encode(arrived),
                                            key=raw_event_key(arrived.instrument, arrived.detector))
                        report.announced += 1
        if on_step is not None:
            on_step(step, late)
    return report
