"""Model files shipped inside the ragprune package.

``pruner-minilm/``: ragprune's own Provence-style pruner (the ms-marco
MiniLM-L-12 cross-encoder fine-tuned on HotpotQA's training split and on
generated out-of-domain cases; see its ``MODEL_CARD.md``), in the
format of :mod:`ragprune.stages.provence`.  Load it with
``ragprune.ProvencePruner(ragprune.defaults.DEFAULT_PRUNER_PATH)`` or use
:func:`ragprune.defaults.default_pipeline`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODELS_DIR", "PRUNER_MINILM"]

MODELS_DIR = Path(__file__).resolve().parent
PRUNER_MINILM = MODELS_DIR / "pruner-minilm"
