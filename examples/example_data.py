"""Questions for the framework examples: HotpotQA test-split questions from the assets folder
(``ragprune assets --only hotpotqa``), else the ten bundled demo documents with three questions."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str
    support: frozenset[str]  # titles of the paragraphs that hold the answer
    paragraphs: tuple[tuple[str, str], ...]  # (title, text) to retrieve from


def default_hotpotqa() -> Path | None:
    """hotpotqa.json in the assets folder, or None when it has not been fetched."""
    try:
        from ragprune.tools.assets import asset_path

        return asset_path("hotpotqa")
    except (ImportError, FileNotFoundError):
        return None


def load_questions(path: Path | None, n: int) -> list[Question]:
    """The first ``n`` HotpotQA test-split questions of ``path``, else the bundled ones."""
    if path is None or not Path(path).is_file():
        logging.getLogger(__name__).warning(
            "no HotpotQA file (run `ragprune assets --only hotpotqa`); using the bundled demo documents")
        docs = json.loads((DATA / "demo_docs.json").read_text(encoding="utf-8"))
        pool = tuple((d["title"], d["text"]) for d in docs)
        items = json.loads((DATA / "demo_questions.json").read_text(encoding="utf-8"))
        return [Question(f"demo-{i}", q["question"], q["answer"], frozenset(q["support"]), pool)
                for i, q in enumerate(items[:n])]
    from ragprune.training.datasets import load_hotpotqa

    return [Question(c.id, c.question, c.answers[0] if c.answers else "", frozenset(c.gold_titles), tuple(c.passages))
            for c in load_hotpotqa("test", path=path, limit=n)]


def unique_paragraphs(questions: list[Question]) -> list[tuple[str, str]]:
    """Every (title, text) of the questions once, in order: the corpus to retrieve from."""
    return list(dict.fromkeys(p for q in questions for p in q.paragraphs))

