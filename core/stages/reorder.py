"""LongContextReorder: most relevant passages at the start and the end."""

from __future__ import annotations

from ..passage import BaseStage, Passage, StageOutput

__all__ = ["LongContextReorder"]


class LongContextReorder(BaseStage):
    """Reorders ranked passages so the best sit at both ends of the context.

    Input is taken as ranked best-first (the order of the previous stage, or by
    ``score`` when ``by_score=True``); ranks 1, 3, 5, ... fill the front and
    ranks 2, 4, 6, ... fill the back, so the weakest end up in the middle where
    long-context LLMs attend least.  Never drops or alters a passage.
    """

    name = "long-context-reorder"

    def __init__(self, *, by_score: bool = False) -> None:
        self.by_score = by_score

    def __repr__(self) -> str:
        return f"LongContextReorder(by_score={self.by_score})"

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        ranked = passages
        if self.by_score:
            ranked = sorted(passages, key=lambda p: float("-inf") if p.score is None else p.score, reverse=True)
        front = ranked[0::2]
        back = ranked[1::2]
        return StageOutput(tuple(front + back[::-1]))
