"""TopN: keep the first ``n`` passages in the current order."""

from __future__ import annotations

from ..passage import BaseStage, Passage, StageOutput
from ..runtime.validation import check_int

__all__ = ["TopN"]


class TopN(BaseStage):
    """Keeps the first ``n`` passages in the order the previous stage left them; reports the rest
    as drops ("rank r beyond top_n=n").  Scores and texts are untouched."""

    name = "top-n"

    def __init__(self, n: int) -> None:
        self.n = check_int("n", n, min=0)

    def __repr__(self) -> str:
        return f"TopN({self.n})"

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        dropped = tuple(self._drop(p, f"rank {r} beyond top_n={self.n}")
                        for r, p in enumerate(passages[self.n:], start=self.n + 1))
        return StageOutput(tuple(passages[: self.n]), dropped)
