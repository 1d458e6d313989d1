"""The .avsc files are the wire format; models mirror them; versions stay backward compatible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightshift.events import EVENT_TYPES, TOPICS, backward_problems, default_catalog


def test_every_subject_has_a_schema_and_a_model() -> None:
    catalog = default_catalog()
    assert sorted(catalog.subjects) == sorted(EVENT_TYPES) == sorted(TOPICS)
    assert set(TOPICS) >= {
        "nextVisit", "raw.arrived", "raw.ingested", "quantum.planned", "quantum.completed",
        "quantum.failed", "dataset.write", "dataset.stored", "dia.results",
    }


@pytest.mark.parametrize("subject", sorted(EVENT_TYPES))
def test_model_fields_match_newest_schema(subject: str) -> None:
    schema = default_catalog().latest(subject).raw
    model = EVENT_TYPES[subject]
    assert [f["name"] for f in schema["fields"]] == list(model.model_fields), (
        f"the pydantic model of {subject!r} drifted from its .avsc"
    )


def _version_pairs() -> list[tuple[str, int, int]]:
    """(subject, older version, next version) for every subject with more than one schema version."""
    catalog = default_catalog()
    pairs = []
    for subject in sorted(EVENT_TYPES):
        versions = catalog.versions(subject)
        pairs += [(subject, old.version, new.version) for old, new in zip(versions, versions[1:], strict=False)]
    return pairs


VERSION_PAIRS = _version_pairs()


def test_there_are_schema_versions_to_compare() -> None:
    """The compatibility test below is parametrized by the real version pairs: it must have some to check."""
    assert VERSION_PAIRS, "no subject has two schema versions: the backward-compatibility test checks nothing"
    assert {s for s, _, _ in VERSION_PAIRS} >= {"quantum.planned", "quantum.completed", "quantum.failed"}


@pytest.mark.parametrize(("subject", "old", "new"), VERSION_PAIRS,
                         ids=[f"{s}-v{o}-v{n}" for s, o, n in VERSION_PAIRS])
def test_each_version_reads_data_of_the_previous(subject: str, old: int, new: int) -> None:
    versions = {v.version: v for v in default_catalog().versions(subject)}
    older, newer = versions[old].raw, versions[new].raw
    assert newer["fields"] != older["fields"], f"{subject} v{new} changes nothing: why a new version?"
    assert backward_problems(newer, older) == [], f"{subject} v{new} cannot read data written with v{old}"


BASE = {
    "type": "record", "name": "E", "fields": [
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
    ],
}


def _with(fields: list[dict]) -> dict:
    return {**BASE, "fields": fields}


def test_compat_allows_added_field_with_default_and_promotion() -> None:
    new = _with([BASE["fields"][0], {"name": "n", "type": "long"}, {"name": "x", "type": "double", "default": 0.0}])
    assert backward_problems(new, BASE) == []


def test_compat_rejects_added_field_without_default() -> None:
    new = _with([*BASE["fields"], {"name": "x", "type": "double"}])
    assert backward_problems(new, BASE) == ["x: field added without a default, so old data cannot be read"]


def test_compat_rejects_narrowing_and_type_change() -> None:
    assert backward_problems(_with([BASE["fields"][0], {"name": "n", "type": "string"}]), BASE)
    wide = _with([BASE["fields"][0], {"name": "n", "type": "long"}])
    assert backward_problems(BASE, wide) == ["n: type changed from long to int, which Avro cannot promote"]


def test_compat_checks_nested_arrays_and_unions() -> None:
    old = _with([{"name": "ids", "type": {"type": "array", "items": "int"}}])
    new = _with([{"name": "ids", "type": {"type": "array", "items": ["null", "long"]}}])
    assert backward_problems(new, old) == []
    bad = _with([{"name": "ids", "type": {"type": "array", "items": "string"}}])
    assert backward_problems(bad, old)


def test_manifest_ids_are_unique_and_files_exist(tmp_path: Path) -> None:
    from nightshift.events import SchemaCatalog, SchemaError, schemas_dir

    manifest = json.loads((schemas_dir() / "manifest.json").read_text())
    ids = [v["id"] for s in manifest["subjects"].values() for v in s["versions"]]
    assert len(ids) == len(set(ids))
    # A manifest reusing an id is refused.
    (tmp_path / "events").mkdir()
    for s in manifest["subjects"].values():
        for v in s["versions"]:
            (tmp_path / v["file"]).write_text((schemas_dir() / v["file"]).read_text())
            v["id"] = 7
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match="schema id 7 is used twice"):
        SchemaCatalog(tmp_path)
