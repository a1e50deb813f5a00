"""One module per stage: rerankers, the pruner, selectors, token compressors, reordering.

Every stage speaks the contract of :mod:`ragprune.passage` (``apply(query, passages)``);
model-backed ones load through :mod:`ragprune.runtime`.  Import the classes from
``ragprune`` itself (``ragprune.CrossEncoderReranker``, ...); importing this package
imports no model code.
"""
