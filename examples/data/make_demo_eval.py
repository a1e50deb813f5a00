"""Write ``demo_eval.jsonl``: questions a user would ask over the ten demo documents, labelled by hand.

Thirty cases, each with all ten documents of ``demo_docs.json`` as its passages (a mixed-topic retrieved
set): twenty answerable questions, their supporting sentences located below by a unique substring, and ten
that nothing in the documents answers. Each case lists the documents unrelated to its question
(``offtopic``), so ``ragprune bench --data examples/data/demo_eval.jsonl`` reports the share of those dropped
and of unanswerable cases emptied. Real (hand-written) text and questions, unlike the generated ``--data ood``
set; small (22 supporting sentences: one is 0.045 of recall), so read its figures beside the others.

    python examples/data/make_demo_eval.py          # rewrites examples/data/demo_eval.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

from ragprune import sentence_spans

HERE = Path(__file__).resolve().parent
ALL = set(range(10))

ANSWERABLE: list[tuple[str, str, list[tuple[int, str]], set[int]]] = [  # question, answer, evidence, off-topic
 ("How long is the Seine?", "777", [(0, "777-kilometre")], {3, 4, 6, 7, 8, 9}),
 ("Where does the Seine reach the sea?", "Le Havre", [(0, "Le Havre")], {3, 4, 6, 7, 8, 9}),
 ("What is the height of the Eiffel Tower in metres?", "330 metres", [(1, "330 metres")], {0, 5, 6, 7, 8}),
 ("When was the Eiffel Tower built?", "1887", [(1, "between 1887 and 1889")], {0, 5, 6, 7, 8}),
 ("Who designed the Chrysler Building?", "William Van Alen", [(4, "Van Alen")], {0, 2, 3, 5, 6, 7, 8}),
 ("Which building overtook the Chrysler Building as the world's tallest?", "Empire State Building",
  [(4, "surpassed by")], {0, 2, 3, 5, 6, 7, 8}),
 ("What is Dijon famous for?", "mustard", [(5, "mustard")], {1, 3, 4, 6, 7, 8, 9}),
 ("How far is Dijon from Paris?", "300 kilometres", [(5, "300 kilometres")], {1, 3, 4, 6, 7, 8, 9}),
 ("Who first climbed Mont Blanc?", "Jacques Balmat", [(6, "first recorded ascent")], ALL - {6}),
 ("How high is Mont Blanc?", "4,806 metres", [(6, "4,806")], ALL - {6}),
 ("How much does a standard baguette weigh?", "250 grams", [(7, "250 grams")], ALL - {7}),
 ("When did UNESCO recognise the craft of the baguette?", "2022", [(7, "UNESCO")], ALL - {7}),
 ("What are wind tunnels used for?", "aircraft", [(8, "study its aerodynamics"), (8, "test aircraft")],
  {0, 1, 3, 4, 5, 6, 7, 9}),
 ("On which floor is the Empire State Building's observation deck?", "86th floor", [(9, "86th floor")],
  {0, 1, 2, 3, 5, 6, 7, 8}),
 ("Why is the Empire State Building called that?", "nickname of New York", [(9, "nickname")],
  {0, 1, 2, 3, 5, 6, 7, 8}),
 ("Who sculpted the Statue of Liberty?", "Bartholdi", [(3, "Bartholdi")], {0, 1, 4, 5, 6, 7, 8, 9}),
 ("When was the Statue of Liberty dedicated?", "1886", [(3, "October 28, 1886")], {0, 1, 4, 5, 6, 7, 8, 9}),
 ("Where was Gustave Eiffel born?", "Dijon", [(2, "born in Dijon")], {0, 4, 6, 7, 9}),
 ("Which viaduct did Eiffel's company build?", "Garabit viaduct", [(2, "Garabit")], {0, 4, 5, 6, 7, 9}),
 ("In which city was the engineer who built the Statue of Liberty's framework born?", "Dijon",
  [(3, "metal framework"), (2, "born in Dijon")], {4, 6, 7, 8, 9}),
]
UNANSWERABLE: list[tuple[str, set[int]]] = [  # question, off-topic documents
 ("How many visitors does the Louvre get each year?", ALL - {0, 1}),
 ("What is the population of Lyon?", ALL - {0, 5}),
 ("Who designed the Golden Gate Bridge?", ALL - {2}),
 ("How tall is the Burj Khalifa?", ALL - {1, 4, 9}),
 ("How do you make croissants?", ALL - {7}),
 ("When was the Matterhorn first climbed?", ALL - {6}),
 ("What is the capital of Australia?", ALL),
 ("How fast can a cheetah run?", ALL),
 ("In what year did the Titanic sink?", ALL),
 ("Who painted the Mona Lisa?", ALL),
]


def _sentences(text: str) -> list[str]:
    """The non-blank sentences of ``text``, trimmed: what a JSONL case's sentence indices count."""
    return [text[a:b].strip() for a, b in sentence_spans(text) if text[a:b].strip()]


def _gold(docs: list[dict[str, str]], pairs: list[tuple[int, str]]) -> list[list[int]]:
    out = []
    for p, piece in pairs:
        hits = [j for j, s in enumerate(_sentences(docs[p]["text"])) if piece in s]
        if len(hits) != 1:
            raise ValueError(f"{piece!r} is in {len(hits)} sentences of document {p}, not one")
        out.append([p, hits[0]])
    return out


def build(docs: list[dict[str, str]]) -> list[dict[str, object]]:
    """The cases, interleaved: two answerable, then one unanswerable."""
    passages = [{"title": d["title"], "text": d["text"]} for d in docs]
    answerable = []
    for q, a, pairs, off in ANSWERABLE:
        gold = _gold(docs, pairs)
        if {p for p, _ in gold} & off or a.lower() not in " ".join(docs[p]["text"] for p, _ in gold).lower():
            raise ValueError(f"inconsistent labels for {q!r}")
        answerable.append({"question": q, "answers": [a], "passages": passages, "gold_sentences": gold,
                           "answerable": True, "offtopic": sorted(off)})
    unanswerable = [{"question": q, "answers": [], "passages": passages, "answerable": False,
                     "offtopic": sorted(off)} for q, off in UNANSWERABLE]
    cases, a_it, u_it = [], iter(answerable), iter(unanswerable)
    for k in range(len(answerable) + len(unanswerable)):
        cases.append({"id": f"demo-{k}", **(next(u_it) if k % 3 == 2 else next(a_it))})
    return cases


def main() -> None:
    docs = json.loads((HERE / "demo_docs.json").read_text(encoding="utf-8"))
    cases = build(docs)
    with open(HERE / "demo_eval.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in cases)
    print(f"{len(cases)} cases, {sum(len(c.get('gold_sentences', [])) for c in cases)} supporting sentences")


if __name__ == "__main__":
    main()
