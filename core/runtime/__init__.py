"""The model runtime: device and dtype, offline-first loading (:mod:`.loading`), length-sorted
bounded batching (:mod:`.batching`), encoder wrappers (:mod:`.encoders`), the causal-LM scorer
(:mod:`.causal_lm`) and argument validation (:mod:`.validation`).

Importing this package imports neither torch nor transformers.
"""
