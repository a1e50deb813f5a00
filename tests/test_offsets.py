"""The one offset map between original and rendered text, against render_spans itself."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ragprune import Passage, render_spans, sentence_spans, word_spans
from ragprune.text.offsets import OffsetMap

TEXT = st.text(alphabet=st.sampled_from(list("ab c.d!e?北京 \n\t,")), max_size=50)


@st.composite
def text_and_spans(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]]]:
    original = draw(TEXT)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(original)), max_size=8))))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    return original, [(a, b) for a, b in pairs if b > a]


@settings(max_examples=300, deadline=None)
@given(text_and_spans())
def test_units_map_onto_the_rendered_text(case: tuple[str, list[tuple[int, int]]]) -> None:
    original, spans = case
    text = render_spans(original, spans)
    m = OffsetMap.of(original, spans)
    units = [(a + x, a + y) for a, b in spans for x, y in word_spans(original[a:b])]
    mapped = m.to_text(units)
    assert [text[a:b] for a, b in mapped.tolist()] == [original[a:b] for a, b in units]
    # and back: each unit's rendered range lies inside one kept piece
    start, inside = m.to_original(mapped[:, 0], mapped[:, 1] - mapped[:, 0])
    assert inside.all() and start.tolist() == [a for a, _ in units]


def test_a_range_over_an_inserted_space_has_no_original_span() -> None:
    p = Passage.from_text("Alpha one. Beta two.", 0).with_spans([(0, 5), (11, 15)])
    assert p.text == "Alpha Beta"
    start, inside = p.offset_map().to_original(np.array([0, 4, 6]), np.array([5, 2, 4]))
    assert inside.tolist() == [True, False, True] and start[[0, 2]].tolist() == [0, 11]


def test_passage_offset_map_matches_its_sentences() -> None:
    original = "First one. Second one! 北京是中国的首都。Last."
    p = Passage.from_text(original, 0)
    keep = [sentence_spans(original)[i] for i in (0, 2, 3)]
    cut = p.with_spans(keep)
    for (a, b), (x, y) in zip(cut.units("sentence"), cut.offset_map().to_text(cut.units("sentence")).tolist(),
                              strict=True):
        assert cut.text[x:y] == original[a:b]
    assert OffsetMap.of("", []).to_text([]).shape == (0, 2)
