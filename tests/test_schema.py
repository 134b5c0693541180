"""The typed documents: published JSON Schemas match the types, real documents validate, errors name fields."""

from __future__ import annotations

import json

import pytest

from edgeseq import card as cards, schema
from edgeseq.errors import DocumentError


def test_published_schemas_match_the_types():
    published = sorted(p.name for p in schema.SCHEMA_DIR.glob("*.schema.json"))
    generated = schema.json_schemas()
    assert published == sorted(generated), "run `python -m edgeseq.schema` and commit edgeseq/schemas/"
    for name, document in generated.items():
        on_disk = json.loads((schema.SCHEMA_DIR / name).read_text())
        assert on_disk == json.loads(json.dumps(document)), f"{name} is stale: run `python -m edgeseq.schema`"
        assert on_disk["properties"]["schema"] == {"const": document["properties"]["schema"]["const"], "title": "Schema"}


def test_every_document_kind_has_a_version():
    assert set(schema.DOCUMENTS) == {"edgeseq.card/1", "edgeseq.bundle/1", "edgeseq.verify/1", "edgeseq.bench/1",
                                     "edgeseq.pipeline/1"}


def _card() -> dict:
    return {"schema": "edgeseq.card/1", "input": {"name": "image", "shape": [None, 28, 28], "dtype": "float32"},
            "output": cards.classify_output(), "preprocessing": cards.PREPROCESSING}


def test_a_minimal_user_card_reads(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(_card()))
    card = cards.read_card(path)
    assert card.output.kind == "classify" and card.output.labels == [str(d) for d in range(10)]
    assert card.name is None and card.test_metrics() is None
    with pytest.raises(Exception):
        card.output.kind = "spell"  # frozen


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["output"].__setitem__("shape", [5]), "field output: a classify output needs one label per class"),
    (lambda c: c["input"].__setitem__("shape", [None, "x"]), "field input.shape[1]"),
    (lambda c: c.__setitem__("nickname", "x"), "field nickname: Extra inputs are not permitted"),
    (lambda c: c.__setitem__("schema", "edgeseq.card/9"), "schema 'edgeseq.card/1' expected, found 'edgeseq.card/9'"),
])
def test_card_errors_name_the_file_and_the_field(tmp_path, edit, message):
    card = _card()
    edit(card)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    with pytest.raises(DocumentError) as caught:
        cards.read_card(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_several_problems_are_counted_in_one_line(tmp_path):
    card = _card()
    del card["input"], card["preprocessing"]
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    with pytest.raises(DocumentError, match=r"field input: Field required \(and 1 more\)"):
        cards.read_card(path)


def test_bundle_paths_are_confined():
    for bad in ("../x", "/x", "a/../../x", ".hidden", "a\\b", "C:x", "", "."):
        with pytest.raises(ValueError):
            schema.bundle_relative(bad)
    assert schema.bundle_relative("logs/tflite-fp32.log") == "logs/tflite-fp32.log"


def test_what_edgeseq_writes_validates(tiny_bundle):
    """The session's bundle: its manifest reads back typed, and survives a round trip unchanged."""
    _, result = tiny_bundle
    raw = json.loads((result.bundle_dir / "manifest.json").read_text())
    manifest = schema.parse_document(schema.Manifest, raw, "manifest.json")
    assert schema.to_json(manifest) == raw
    assert [a.id for a in manifest.ok_artifacts()] == [a["id"] for a in raw["artifacts"]]
    assert manifest.source.bytes == result.manifest.source.bytes and manifest.kind == "classify"


def test_an_invalid_document_edgeseq_builds_is_a_bug_not_a_user_error():
    with pytest.raises(RuntimeError, match="edgeseq built an invalid verify report"):
        schema.validated(schema.VerifyReport, {"schema": "edgeseq.verify/1"})
