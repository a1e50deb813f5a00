"""``ragprune prune``: JSONL and Parquet outputs, resume, refusing to overwrite, one-line errors (local engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragprune.cli import main

pytestmark = pytest.mark.slow

DOCS = json.loads((Path(__file__).resolve().parent.parent / "examples" / "data" / "demo_docs.json").read_text())


def _rows(n: int) -> list[dict[str, Any]]:
    texts = [d["text"] for d in DOCS]
    rows: list[dict[str, Any]] = [{"query": "Where does the Seine flow?", "passages": texts[k % 3:][:3],
                                   "metadata": {"k": k}} for k in range(n)]
    rows[1] = {"query": "no passages field"}  # bad input: written with its error
    return rows


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(5)))
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_output_then_resume_skips_written_rows(src: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert main(["prune", "--input", str(src), "--output", str(out), "--no-progress", "--budget", "40"]) == 0
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]  # line numbers
    assert rows[1]["error"] == "ValueError: the row has no 'passages'" and rows[1]["kept"] == []
    assert all(r["error"] is None and r["tokens_after"] <= 40 and r["metadata"] == {"k": r["id"] - 1}
               for r in rows if r["id"] != 2)
    assert all(k["spans"] and "text" in k for r in rows for k in r["kept"])
    capsys.readouterr()
    # an interrupted run: two rows written, the third cut mid-line; a marker shows rows are not redone
    kept = [dict(r, marker=True) for r in rows[:2]]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept) + json.dumps(rows[2])[:30])
    assert main(["prune", "--input", str(src), "--output", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["prune", "--input", str(src), "--output", str(out), "--resume", "--no-progress",
                 "--budget", "40"]) == 0
    again = _jsonl(out)
    assert [r["id"] for r in again] == [1, 2, 3, 4, 5]
    assert [r.get("marker") for r in again] == [True, True, None, None, None]
    def same(r: dict[str, Any]) -> list[Any]:  # scores differ by float rounding with the batch's composition
        return [(k["index"], k["text"], k["spans"]) for k in r["kept"]]

    assert [same(r) for r in again[2:]] == [same(r) for r in rows[2:]]
    assert "3 rows written" in capsys.readouterr().err
    assert main(["prune", "--input", str(src), "--output", str(out), "--resume", "--no-progress"]) == 0
    assert "0 rows written" in capsys.readouterr().err and len(_jsonl(out)) == 5


def test_parquet_output_resume_and_overwrite(src: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "out.parquet"
    assert main(["prune", "--input", str(src), "--output", str(out), "--no-progress", "--batch-size", "2"]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 5 and {"kept", "dropped", "error", "tokens_before", "id"} <= set(table.column_names)
    assert not (tmp_path / "out.parquet.partial").exists()
    first = table.to_pylist()
    src.write_text(src.read_text() + json.dumps(_rows(7)[6]) + "\n")
    assert main(["prune", "--input", str(src), "--output", str(out), "--resume", "--no-progress"]) == 0
    resumed = pq.read_table(out).to_pylist()
    assert [r["id"] for r in resumed] == [1, 2, 3, 4, 5, 6] and resumed[:5] == first
    assert main(["prune", "--input", str(src), "--output", str(out), "--overwrite", "--no-progress"]) == 0
    assert pq.read_table(out).num_rows == 6


@pytest.mark.parametrize(("content", "args", "message"), [
    ('{"query": "q", "passages": []}\nnot json\n', [], "line 2: not JSON"),
    ('[1, 2]\n', [], "line 1: not a JSON object"),
    ('{"id": 1, "query": "q", "passages": []}\n{"id": 1, "query": "q", "passages": []}\n', [], "repeats line 1"),
    ('{"query": "q", "passages": []}\n', ["--output-name", "x.csv"], "must end in .jsonl or .parquet"),
    ('{"query": "q", "passages": []}\n', ["--resume", "--overwrite"], "not allowed with"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list[str],
                               message: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    name = args[1] if args[:1] == ["--output-name"] else "out.jsonl"
    extra = args[2:] if args[:1] == ["--output-name"] else args
    assert main(["prune", "--input", str(src), "--output", str(tmp_path / name), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("ragprune prune: error:")
    assert not (tmp_path / name).exists()


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
