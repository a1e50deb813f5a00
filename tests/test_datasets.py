"""ragprune.training.datasets: HotpotQA loading and splits on a fabricated file, and the JSONL loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragprune.training.datasets import QACase, load_hotpotqa, load_jsonl, split_indices


def _record(i: int) -> dict[str, object]:
    """A HotpotQA distractor record with the real schema (sentences keep their leading spaces)."""
    return {
        "_id": f"id{i}",
        "answer": f"answer {i}",
        "question": f"Question {i}?",
        "supporting_facts": [[f"Gold {i}", 1], [f"Other {i}", 0], [f"Gold {i}", 1], ["Missing", 0], [f"Other {i}", 9]],
        "context": [
            [f"Distractor {i}", ["First distractor sentence.", " Second one."]],
            [f"Gold {i}", [f"Gold {i} opens here.", f" The answer is answer {i}.", " A closing remark."]],
            [f"Other {i}", ["No leading space.", "Glued sentence without space.", "  "]],
        ],
        "type": "bridge",
        "level": "medium",
    }


@pytest.fixture()
def hotpot_file(tmp_path: Path) -> Path:
    path = tmp_path / "hotpotqa.json"
    path.write_text(json.dumps([_record(i) for i in range(10)]), encoding="utf-8")
    return path


def test_split_rule_first_train_last_test(hotpot_file: Path) -> None:
    train = load_hotpotqa("train", path=hotpot_file, train_size=6, test_size=3)
    test = load_hotpotqa("test", path=hotpot_file, train_size=6, test_size=3)
    every = load_hotpotqa("all", path=hotpot_file, train_size=6, test_size=3)
    assert [c.id for c in train] == [f"id{i}" for i in range(6)]
    assert [c.id for c in test] == ["id7", "id8", "id9"]  # the LAST test_size, in file order
    assert [c.id for c in every] == [f"id{i}" for i in range(10)]
    assert not {c.id for c in train} & {c.id for c in test}
    assert [c.id for c in load_hotpotqa("test", path=hotpot_file, limit=2, train_size=6, test_size=3)] == ["id7", "id8"]
    assert load_hotpotqa("train", path=hotpot_file, limit=0, train_size=6, test_size=3) == []


def test_split_errors(hotpot_file: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        load_hotpotqa("dev", path=hotpot_file)
    with pytest.raises(ValueError, match="fewer than"):  # the real rule needs 7,405 questions
        load_hotpotqa("test", path=hotpot_file)
    with pytest.raises(ValueError, match="limit"):
        load_hotpotqa("test", path=hotpot_file, limit=-1, train_size=6, test_size=3)
    assert split_indices(7405, "test") == range(6405, 7405)
    assert split_indices(7405, "train") == range(0, 6405)


def test_gold_sentences_resolved(hotpot_file: Path) -> None:
    case = load_hotpotqa("all", path=hotpot_file, limit=1, train_size=6, test_size=3)[0]
    assert isinstance(case, QACase)
    assert case.question == "Question 0?" and case.answers == ("answer 0",)
    assert [t for t, _ in case.passages] == ["Distractor 0", "Gold 0", "Other 0"]
    # duplicates dropped, a missing title and an out-of-range index skipped, order kept
    assert case.gold_sentences == ((1, 1), (2, 0))
    assert case.gold_titles == ("Gold 0", "Other 0", "Missing")
    assert case.gold_texts() == ("The answer is answer 0.", "No leading space.")
    assert case.gold_passages == (1, 2)
    assert dict(case.metadata) == {"type": "bridge", "level": "medium"}


def test_passage_text_and_spans(hotpot_file: Path) -> None:
    case = load_hotpotqa("all", path=hotpot_file, limit=1, train_size=6, test_size=3)[0]
    assert case.passages[1][1] == "Gold 0 opens here. The answer is answer 0. A closing remark."
    # two sentences that would touch get one space between them
    assert case.passages[2][1].startswith("No leading space. Glued sentence without space.")
    raw = _record(0)["context"]
    for (_, text), spans, (_, sentences) in zip(case.passages, case.sentence_spans, raw, strict=True):  # type: ignore[arg-type]
        assert len(spans) == len(sentences)
        assert [text[s:e] for s, e in spans] == [s.strip() for s in sentences]
        starts = [s for s, _ in spans]
        assert starts == sorted(starts) and all(0 <= s <= e <= len(text) for s, e in spans)


def test_cases_are_frozen(hotpot_file: Path) -> None:
    case = load_hotpotqa("all", path=hotpot_file, limit=1, train_size=6, test_size=3)[0]
    with pytest.raises(AttributeError):
        case.question = "x"  # type: ignore[misc]
    assert hash(case) == hash(load_hotpotqa("all", path=hotpot_file, limit=1, train_size=6, test_size=3)[0])


def test_missing_asset_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGPRUNE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ragprune assets --only hotpotqa"):
        load_hotpotqa("test")


# ---------------------------------------------------------------- JSONL


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_good(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "d.jsonl", [
        json.dumps({"id": "a", "question": "Where is Paris?", "answers": ["France"],
                    "passages": ["Paris is in France. It is big.",
                                 {"title": "Berlin", "text": "Berlin is in Germany."}],
                    "gold_sentences": [[0, 0]]}),
        "",
        json.dumps({"question": "北京是哪里?", "answers": "中国", "passages": [{"text": "北京是中国的首都。很大。"}]}),
    ])
    cases = load_jsonl(path)
    assert len(cases) == 2
    a, b = cases
    assert a.id == "a" and a.answers == ("France",)
    assert a.passages == (("", "Paris is in France. It is big."), ("Berlin", "Berlin is in Germany."))
    assert a.gold_texts() == ("Paris is in France.",)
    assert a.gold_titles == ()
    assert b.id == "3" and b.answers == ("中国",) and b.gold_sentences == ()
    for case in cases:
        for (_, text), spans in zip(case.passages, case.sentence_spans, strict=True):
            assert "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")
    assert len(load_jsonl(path, limit=1)) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"answers": ["x"], "passages": ["p"]}', "'question' must be a string"),
        ('{"question": " \\t", "answers": ["x"], "passages": ["p"]}', "'question' is blank"),
        ('{"question": "q", "answers": ["x"], "passages": "p"}', "'passages' must be a list"),
        ('{"question": "q", "answers": ["x"], "passages": [3]}', "passage 0"),
        ('{"question": "q", "answers": [1], "passages": ["p"]}', "'answers'"),
        ('{"question": "q", "answers": "x", "passages": ["One. Two."], "gold_sentences": [[0, 5]]}', "out of range"),
        ('{"question": "q", "answers": "x", "passages": ["One."], "gold_sentences": [0]}', "gold sentence"),
        ('{"question": "q", "answers": "x", "passages": ["One."], "answerable": "no"}', "'answerable' must be"),
        ('{"question": "q", "answers": "x", "passages": ["One."], "answerable": false, "gold_sentences": [[0, 0]]}',
         "unanswerable case cannot have gold"),
        ('{"question": "q", "answers": "x", "passages": ["One."], "offtopic": [1]}', "passage indices (0..0)"),
        ('{"question": "q", "answers": "x", "passages": ["One."], "offtopic": [true]}', "'offtopic' must be"),
        ('{"question": "q", "answers": "x", "passages": ["One.", "Two."], "offtopic": [0], '
         '"gold_sentences": [[0, 0]]}', "off-topic passage cannot hold"),
    ],
)
def test_jsonl_malformed_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"question": "q", "answers": ["a"], "passages": ["p."]})
    path = _write_lines(tmp_path / "bad.jsonl", [good, "", line])
    with pytest.raises(ValueError, match="line 3") as info:
        load_jsonl(path)
    assert message in str(info.value)


def test_jsonl_abstention_labels_reach_the_bench_figures(tmp_path: Path) -> None:
    """``answerable`` and ``offtopic`` become the case metadata that ``ragprune bench`` reads."""
    from ragprune.bench.metrics import case_metrics
    from ragprune.text.tokens import get_counter

    path = _write_lines(tmp_path / "d.jsonl", [
        json.dumps({"question": "Where is the Louvre?", "answers": [], "answerable": False, "offtopic": [1, 1],
                    "passages": ["Paris is in France.", "Bread is baked."]}),
        json.dumps({"question": "Where is Paris?", "answers": "France", "passages": ["Paris is in France."]}),
    ])
    unanswerable, plain = load_jsonl(path)
    assert dict(unanswerable.metadata) == {"answerable": False, "offtopic": (1,)}
    assert plain.metadata == ()
    counter = get_counter("words")
    emptied = case_metrics(unanswerable, [None, None], counter, seconds=0.0)
    assert emptied.marked_unanswerable is True and emptied.emptied and emptied.offtopic_dropped == 1
    kept = case_metrics(unanswerable, ["Paris is in France.", None], counter, seconds=0.0)
    assert not kept.emptied and kept.offtopic_passages == 1 and kept.offtopic_dropped == 1


def test_the_demo_evaluation_set_is_what_its_script_writes() -> None:
    """``examples/data/demo_eval.jsonl`` matches its hand-written labels (``make_demo_eval.py``) and loads."""
    import importlib.util

    examples = Path(__file__).resolve().parents[1] / "examples" / "data"
    spec = importlib.util.spec_from_file_location("make_demo_eval", examples / "make_demo_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docs = json.loads((examples / "demo_docs.json").read_text(encoding="utf-8"))
    stored = [json.loads(line) for line in (examples / "demo_eval.jsonl").read_text(encoding="utf-8").splitlines()]
    assert module.build(docs) == stored
    cases = load_jsonl(examples / "demo_eval.jsonl")
    assert len(cases) == 30 and sum(not dict(c.metadata)["answerable"] for c in cases) == 10
    for case in cases:  # every answer sits in its supporting sentences
        if case.answers:
            gold = " ".join(case.sentence(p, j) for p, j in case.gold_sentences)
            assert case.answers[0].lower() in gold.lower()
