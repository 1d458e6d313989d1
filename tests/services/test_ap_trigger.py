"""``nightshift ap trigger`` against the real Kafka and S3: nextVisit ahead of each visit, its raws dropped (and
announced) after, in schedule order; raws uploaded to an S3 prefix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from nightshift.cli import cli
from nightshift.events import AsyncProducer, NextVisit, RawArrived, decode, ensure_topics
from nightshift.obs import RawWatcher, RawWatchLoop
from nightshift.obs.sim import load_night, plan_night, trigger_schedule, write_night

from .ap_support import TopicReader

pytestmark = pytest.mark.integration


def test_trigger_sends_next_visit_then_drops_and_announces_raws_in_order(
        tmp_path: Path, kafka_bootstrap: str, s3_endpoint: str, unique_name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    night = tmp_path / "night"
    write_night(night, plan_night(3, instrument="TestCam"), [0, 1], detector_size=64)
    prefix = f"{unique_name}."
    topics = [prefix + "nextVisit", prefix + "raw.arrived"]
    ensure_topics(kafka_bootstrap, topics, partitions=2)
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    drop = tmp_path / "drop"
    result = CliRunner().invoke(cli, ["ap", "trigger", str(night), "--drop", str(drop), "--cadence", "35",
                                      "--speed", "35", "--announce", "--topic-prefix", prefix])
    assert result.exit_code == 0, result.output
    assert "sent 3 nextVisit, dropped 6 raws, announced 6" in result.output
    assert sorted(p.name for p in drop.iterdir()) == sorted(p.name for p in (night / "raw").rglob("*.fits"))

    reader = TopicReader(kafka_bootstrap, topics)
    try:
        reader.until(lambda m: len(m[topics[0]]) >= 3 and len(m[topics[1]]) >= 6, "3 nextVisit and 6 raw.arrived")
        time_of: dict[tuple[str, int], int] = {}  # (kind, visit) -> the latest broker timestamp (ms)
        for msg in reader.messages[topics[0]]:
            event = decode(msg.value())
            assert isinstance(event, NextVisit) and msg.key() == f"TestCam/{event.visit}".encode()
            time_of[("nextVisit", event.visit)] = msg.timestamp()[1]
        for msg in reader.messages[topics[1]]:
            arrived = decode(msg.value())
            assert isinstance(arrived, RawArrived) and msg.key() == f"TestCam/{arrived.detector}".encode()
            assert Path(arrived.uri).parent == drop.absolute()
            key = ("raws", arrived.visit)
            time_of[key] = max(time_of.get(key, 0), msg.timestamp()[1])
        # Each step is produced (and acknowledged) before the next one starts: the timestamps follow the schedule.
        schedule = trigger_schedule(load_night(night), cadence_s=35)
        stamps = [time_of[(s.kind, s.visit.visit)] for s in schedule]
        assert [s.kind for s in schedule] == ["nextVisit", "nextVisit", "raws", "nextVisit", "raws", "raws"]
        assert stamps == sorted(stamps), list(zip([(s.kind, s.visit.visit) for s in schedule], stamps, strict=True))
    finally:
        reader.close()

    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=unique_name)
    before = datetime.now(UTC)
    result = CliRunner().invoke(cli, ["ap", "trigger", str(night), "--drop", f"s3://{unique_name}/incoming",
                                      "--visits", "1", "--speed", "1000", "--issued-now", "--topic-prefix", prefix])
    assert result.exit_code == 0, result.output
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=unique_name, Prefix="incoming/")["Contents"])
    first = load_night(night)[0]
    assert keys == sorted(f"incoming/{p.name}" for p in first.raws)
    reader = TopicReader(kafka_bootstrap, topics[:1])
    try:  # the second run's nextVisit carries the wall clock, the first run's the simulator's
        reader.until(lambda m: len(m[topics[0]]) >= 4, "the second run's nextVisit")
        events = [decode(m.value()) for m in reader.messages[topics[0]]]
        stamps = sorted(e.issued_at for e in events if isinstance(e, NextVisit) and e.visit == first.visit)
        sim = first.next_visit().issued_at
        assert len(stamps) == 2 and sim in stamps
        (restamped,) = [t for t in stamps if t != sim]
        assert before <= restamped <= datetime.now(UTC)
    finally:
        reader.close()


def test_watch_once_announces_each_raw_and_remembers_it(tmp_path: Path, kafka_bootstrap: str, unique_name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    night = tmp_path / "night"
    write_night(night, plan_night(1, instrument="TestCam"), [0, 1, 2], detector_size=64)
    drop = tmp_path / "drop"
    drop.mkdir()
    for raw in (night / "raw").rglob("*.fits"):
        (drop / raw.name).write_bytes(raw.read_bytes())
    prefix = f"{unique_name}."
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    args = ["ap", "watch", str(drop), "--once", "--state", str(tmp_path / "state.txt"), "--topic-prefix", prefix]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "announced 3 raw(s), rejected 0" in first.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "announced 0 raw(s)" in again.output, again.output
    reader = TopicReader(kafka_bootstrap, [prefix + "raw.arrived"])
    try:
        reader.until(lambda m: len(m[prefix + "raw.arrived"]) >= 3, "3 raw.arrived")
        events = [decode(m.value()) for m in reader.messages[prefix + "raw.arrived"]]
        assert sorted(e.detector for e in events if isinstance(e, RawArrived)) == [0, 1, 2]
    finally:
        reader.close()


async def test_a_raw_unreadable_for_a_while_is_announced_once_readable_not_rejected(
        tmp_path: Path, kafka_bootstrap: str, unique_name: str) -> None:
    night = tmp_path / "night"
    write_night(night, plan_night(1, instrument="TestCam"), [0], detector_size=64)
    (raw,) = (night / "raw").rglob("*.fits")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / raw.name).write_bytes(raw.read_bytes()[:2880])  # truncated: e.g. an object store answering half
    prefix = f"{unique_name}."
    ensure_topics(kafka_bootstrap, [prefix + "raw.arrived", prefix + "raw.arrived.dlq"], partitions=1)
    async with AsyncProducer(kafka_bootstrap) as producer:
        loop = RawWatchLoop(RawWatcher(drop, settle=False), producer, topic_prefix=prefix, reject_after_s=3600.0)
        assert await loop.poll_once() == 1
        assert (loop.announced, loop.rejected) == (0, 0)  # not dead-lettered: tried again next time
        (drop / raw.name).write_bytes(raw.read_bytes())
        await loop.poll_once()
        assert (loop.announced, loop.rejected) == (1, 0)
        assert await loop.poll_once() == 0  # announced once
