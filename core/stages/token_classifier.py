"""Token-classification compression (the LLMLingua-2 method), batched and vectorized.

A ``*ForTokenClassification`` model whose label 1 means "keep" scores every
sub-token of a passage; a word's keep probability is the mean over its
sub-tokens; the most probable words are kept until the rate, token target or
probability threshold is met.  The output is extractive: each passage keeps
whole word spans of its original text.

How this relates to LLMLingua-2 (``llmlingua`` 0.2.2), so that kept words agree
at the same rate:

* word keep probability = mean over the word's sub-tokens of
  ``softmax(logits)[..., 1]``;
* with a rate ``r`` (or a token target turned into a per-passage rate), the
  cut-off is ``numpy.percentile`` of the word probabilities, each repeated once
  per token the word costs in the token counter, at
  ``int(100 * (1 - r) + 1)``; a word is kept when its probability is strictly
  above the cut-off (or equals it when the cut-off is 1.0); force-kept words
  take part in the percentile with probability 1.0.

Where it differs, on purpose:

* words are ragprune's word units (:meth:`Passage.units`), mapped to sub-tokens
  through the fast tokenizer's offsets, so any tokenizer works (WordPiece,
  sentencepiece, DeBERTa, ...) with no per-architecture rules;
* the percentile is taken over a whole passage, not per 512-token chunk, and
  long passages are cut into windows at sentence ends;
* every window of every passage of a call is scored in length-sorted batches
  padded only to the longest window of the batch, each padding at most a tenth
  of its tokens, under a device-aware token cap
  (:class:`~ragprune.runtime.batching.PackedBatching`);
* when the percentile keeps nothing (a one-word passage), the most probable
  word is kept if the budget allows;
* a word containing a digit is force-kept whole (``force_digits``);
  whitespace force tokens such as ``"\\n"`` keep those characters (at no cost);
  other force tokens are matched against whole words;
* the token budget is hard: when the force-kept words cost more than the
  budget, the budget wins and the force-kept words with the highest model
  probability are kept first.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import numpy as np

from ..budget import Budget, allocate_tokens, deprecated_stage_budget
from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.batching import PackedBatching, length_sorted_batches
from ..runtime.loading import LoadKwargs, LoadOptions, require_models
from ..runtime.locks import TokenizerLock
from ..runtime.quantize import quantize_int8
from ..runtime.validation import check_choice, check_int, check_number, check_rate
from ..text.tokens import TiktokenCounter, TokenCounter, WordCounter, get_counter

require_models("ragprune.stages.token_classifier")

__all__ = ["TokenClassifierCompressor", "DEFAULT_FORCE_TOKENS"]

logger = logging.getLogger("ragprune")

DEFAULT_FORCE_TOKENS: tuple[str, ...] = ("\n", ".", "?", "!", ",")
_MAX_WINDOW = 512
_DEFAULT_RATE = 0.5
_LEGACY_CPU_PADDING = 1.2  # the batching before packing, on CPU: padded tokens per real token in one pass


@dataclass(slots=True)
class _Work:
    """One non-blank passage on its way through the model (internal)."""

    pos: int  # position in the call's input
    passage: Passage
    text: str  # the model's input: the passage's current text
    word_orig: np.ndarray  # (W, 2) word spans in ``original`` coordinates
    word_text: np.ndarray  # (W, 2) the same words in ``text`` coordinates
    ids: np.ndarray | None = None  # (T,) sub-token ids, no special tokens
    token_word: np.ndarray | None = None  # (T,) word index of each sub-token
    windows: list[tuple[int, int]] | None = None  # sub-token ranges fed to the model
    probs: np.ndarray | None = None  # (T,) keep probability of each sub-token
    codes: np.ndarray | None = None  # code points of ``text``
    space: np.ndarray | None = None  # which characters of ``text`` are whitespace


def _char_codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def _char_flags(codes: np.ndarray, predicate: Callable[[str], bool]) -> np.ndarray:
    """``predicate(chr(c))`` for every code point, evaluated once per distinct one."""
    if codes.size == 0:
        return np.zeros(0, dtype=bool)
    ascii_table = np.fromiter((predicate(chr(c)) for c in range(128)), dtype=bool, count=128)
    flags: np.ndarray = ascii_table[np.minimum(codes, 127)]
    high = codes >= 128
    if high.any():
        uniq, inverse = np.unique(codes[high], return_inverse=True)
        table = np.fromiter((predicate(chr(int(c))) for c in uniq), dtype=bool, count=len(uniq))
        flags[high] = table[inverse]
    return flags


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"


def _force_words(text: str, codes: np.ndarray, space: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 force_words: tuple[str, ...], force_digits: bool) -> np.ndarray:
    """Which words (``text`` coordinates) are force-kept: a force token, or containing a digit."""
    n_words = len(starts)
    forced = np.zeros(n_words, dtype=bool)
    if not force_words and not force_digits:
        return forced
    nonspace = ~space
    cs_nonspace = np.concatenate(([0], np.cumsum(nonspace, dtype=np.int64)))
    content_len = cs_nonspace[ends] - cs_nonspace[starts]
    if force_digits:
        cs_digit = np.concatenate(([0], np.cumsum(_char_flags(codes, _is_digit), dtype=np.int64)))
        forced |= (cs_digit[ends] - cs_digit[starts]) > 0
    if force_words:
        singles = np.array([ord(t) for t in force_words if len(t) == 1], dtype=np.int64)
        if singles.size:
            # The code of the only non-space character of one-character words.
            cs_code = np.concatenate(([0], np.cumsum(codes.astype(np.int64) * nonspace)))
            code = cs_code[ends] - cs_code[starts]
            forced |= (content_len == 1) & np.isin(code, singles)
        longer = [t for t in force_words if len(t) > 1]
        if longer:
            n = len(text)
            idx = np.where(nonspace, np.arange(n), n)
            first = np.minimum.accumulate(idx[::-1])[::-1]
            first_of_word = first[np.minimum(starts, n - 1)]
            for t in longer:  # per force token; strings compared only for candidate words
                cand = np.flatnonzero((content_len == len(t)) & (codes[np.minimum(first_of_word, n - 1)] == ord(t[0])))
                for w in cand.tolist():
                    f = int(first_of_word[w])
                    if text[f : f + len(t)] == t:
                        forced[w] = True
    return forced


class TokenClassifierCompressor(PackedBatching, TokenizerLock, BaseStage):
    """Query-free extractive compression with a token classifier (LLMLingua-2 method).

    Args:
        model: a local directory or hub id of a ``*ForTokenClassification``
            checkpoint whose label 1 means "keep" (e.g.
            ``microsoft/llmlingua-2-xlm-roberta-large-meetingbank``), or an
            already-loaded model (then ``tokenizer`` is required; it is put in
            eval mode and used on its own device).
        tokenizer: a fast tokenizer (object, path or id); default: ``model``'s.
        rate: fraction of each passage's tokens to keep, in (0, 1]; each
            passage keeps at most ``ceil(rate * tokens)``.
        target_tokens: total tokens to keep over all passages of a call, split
            across passages by :func:`allocate_tokens` (favouring earlier, i.e.
            higher-ranked, passages when ``rank_bias > 0``).  A passage
            whose share is 0 is dropped (reported in ``dropped``).
        threshold: keep every word whose keep probability is at least this, in
            [0, 1].  With ``rate`` or ``target_tokens`` as well, the token
            budget still caps what is kept.
        force_tokens: always keep words equal to these (whitespace tokens such
            as ``"\\n"`` keep those characters).
        force_digits: always keep words containing a digit.
        max_length: window length in sub-tokens, special tokens included
            (default: the model's maximum, capped at 512).
        batch_size: windows per forward pass (at most).
        max_batch_tokens: sub-tokens per forward pass, padding included (a
            longer window gets a pass of its own); default: 2048 on CPU, where
            bigger batches gain nothing, more on GPUs
            (:func:`~ragprune.runtime.batching.default_batch_tokens`).
        counter: how tokens are counted for ``rate`` and ``target_tokens``
            (see :func:`ragprune.get_counter`; default: words).  Each word is
            counted on its own.
        rank_bias: in [0, 1): how much ``target_tokens`` favours earlier passages.
        budget: deprecated (budgets live in the Pipeline; use ``rate``,
            ``target_tokens`` and ``rank_bias``): a :class:`Budget` whose ``rate`` /
            ``max_tokens`` / ``rank_bias`` stand in for those not given.
        quantize: ``"int8"`` for torch dynamic int8 quantization (per-channel
            weights) of the Linear layers but the classification head (CPU
            only; a quantized copy, the given model is untouched).
        options / device / dtype / local_files_only / revision: how a path or hub id
            is loaded (:class:`~ragprune.runtime.loading.LoadOptions` and its shorthands).

    With none of ``rate``, ``target_tokens``, ``threshold``,
    half the tokens are kept.

    Words the model sees no sub-token of take the keep probability of the word
    before them (0 when there is none).

    The windows of all passages of a call are sorted by length and cut into
    batches that pad at most a tenth of their tokens (:meth:`batches`);
    :meth:`padding_stats` counts the tokens fed.  Outputs do not depend on the
    batching (up to float rounding).

    Scores: a passage that already has a score keeps it (a reranker's relevance
    stays the ranking key); its mean word keep probability is appended to
    ``scores`` under ``"token-classifier"`` and becomes ``score`` only when the
    passage had none.  Blank passages pass through unchanged.
    """

    name = "token-classifier"
    requires_query = False

    def __init__(
        self,
        model: Any,
        *,
        tokenizer: Any = None,
        rate: float | None = None,
        target_tokens: int | None = None,
        threshold: float | None = None,
        force_tokens: Sequence[str] = DEFAULT_FORCE_TOKENS,
        force_digits: bool = True,
        max_length: int | None = None,
        batch_size: int = 16,
        max_batch_tokens: int | None = None,
        counter: Any = None,
        rank_bias: float | None = None,
        budget: Budget | None = None,
        quantize: str | None = None,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        budget = deprecated_stage_budget("TokenClassifierCompressor", budget)
        if budget is not None:
            rate = budget.rate if rate is None else rate
            target_tokens = budget.max_tokens if target_tokens is None else target_tokens
            rank_bias = budget.rank_bias if rank_bias is None else rank_bias
        rank_bias = check_number("rank_bias", 0.0 if rank_bias is None else rank_bias, min=0.0, max=1.0,
                                 max_inclusive=False)
        rate = check_rate("rate", rate, allow_none=True)
        target_tokens = check_int("target_tokens", target_tokens, min=0, allow_none=True)
        threshold = check_number("threshold", threshold, min=0.0, max=1.0, allow_none=True)
        if rate is None and target_tokens is None and threshold is None:
            rate = _DEFAULT_RATE
        if isinstance(force_tokens, str):
            raise TypeError("force_tokens must be a sequence of str, not a single str")
        force = tuple(force_tokens)
        for t in force:
            if not isinstance(t, str) or not t:
                raise TypeError(f"force_tokens must be non-empty strings, got {t!r}")
        batch_size = check_int("batch_size", batch_size, min=1)
        max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1, allow_none=True)
        max_length = check_int("max_length", max_length, min=1, allow_none=True)
        check_choice("quantize", quantize, (None, "int8"))

        self.rate = rate
        self.target_tokens = target_tokens
        self.threshold = threshold
        self.force_tokens = force
        self._force_space = tuple(t for t in force if not t.strip())
        self._force_words = tuple(t for t in force if t.strip() and t == t.strip() and not any(
            c.isspace() for c in t))
        self.force_digits = bool(force_digits)
        self.rank_bias = rank_bias
        self.counter: TokenCounter = get_counter(counter)
        self._lock = threading.Lock()
        self._tiktoken_lengths: np.ndarray | None = None

        self.model, self.tokenizer = self._load(model, tokenizer, LoadOptions.resolve(options, **load))
        if quantize == "int8":
            self.model = self._quantize(self.model)
        self.quantize = quantize
        self._head, self._tail = self._special_tokens()
        limit = self._model_max_length()
        if max_length is None:
            max_length = limit
        elif max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds what the model accepts ({limit})")
        if max_length < len(self._head) + len(self._tail) + 1:
            raise ValueError(f"max_length {max_length} leaves no room for text after the special tokens")
        self.max_length = max_length
        pad = getattr(self.tokenizer, "pad_token_id", None)
        self._pad_id = int(pad) if pad is not None else 0
        self._device = _model_device(self.model)
        self._init_packing(batch_size, max_batch_tokens, self._device)
        emb = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        self._vocab = int(emb.num_embeddings) if emb is not None and hasattr(emb, "num_embeddings") else None

    # ------------------------------------------------------------------ loading

    @staticmethod
    def _load(model: Any, tokenizer: Any, opts: LoadOptions) -> tuple[Any, Any]:
        from ..runtime.loading import load_model, load_tokenizer

        if isinstance(model, (str, os.PathLike)):
            from transformers import AutoModelForTokenClassification

            tok = tokenizer
            if tok is None or isinstance(tok, (str, os.PathLike)):
                tok = load_tokenizer(model if tok is None else tok, local_files_only=opts.local_files_only,
                                     revision=opts.revision)
            mdl = load_model(AutoModelForTokenClassification, model, **opts.as_kwargs())
        else:
            if not callable(model) or not hasattr(model, "config"):
                raise TypeError(f"model must be a path, a hub id or a loaded token classifier, "
                                f"got {type(model).__name__}")
            if tokenizer is None:
                raise TypeError("a loaded model needs its tokenizer: pass tokenizer=")
            tok = tokenizer
            if isinstance(tok, (str, os.PathLike)):
                tok = load_tokenizer(tok, local_files_only=opts.local_files_only)
            mdl = model
            mdl.eval()
        num_labels = int(getattr(mdl.config, "num_labels", 0) or 0)
        if num_labels < 2:
            raise ValueError(f"a token classifier with at least 2 labels (1 = keep) is needed; "
                             f"this model has {num_labels}")
        if not getattr(tok, "is_fast", False):
            raise TypeError(f"a fast tokenizer (with offset mappings) is needed, got {type(tok).__name__}")
        return mdl, tok

    @staticmethod
    def _quantize(model: Any) -> Any:
        import torch

        # Per-channel weights; the classification head (the Linear producing the labels) stays in float: it is
        # tiny and its error lands on the decision.
        labels = int(getattr(model.config, "num_labels", 2) or 2)
        heads = [name for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear) and module.out_features == labels]
        return quantize_int8(model, keep_float=heads)

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after one text."""
        enc = self.tokenizer("a", add_special_tokens=True, return_special_tokens_mask=True)
        ids, mask = list(enc["input_ids"]), list(enc["special_tokens_mask"])
        content = [i for i, m in enumerate(mask) if not m]
        if not content:
            return [], []
        return ids[: content[0]], ids[content[-1] + 1 :]

    def _model_max_length(self) -> int:
        cfg = self.model.config
        limit = _MAX_WINDOW
        positions = getattr(cfg, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            if "roberta" in str(getattr(cfg, "model_type", "")) or "camembert" in str(getattr(cfg, "model_type", "")):
                positions -= (getattr(cfg, "pad_token_id", None) or 0) + 1  # positions start after padding_idx
            limit = min(limit, positions)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            limit = min(limit, tok_max)
        return limit

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={getattr(self.model, 'name_or_path', type(self.model).__name__)!r}, "
                f"rate={self.rate}, target_tokens={self.target_tokens}, threshold={self.threshold})")

    # ------------------------------------------------------------------ stage

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        work: list[_Work] = []
        for pos, p in enumerate(passages):
            if p.is_blank:
                continue
            w = self._words(pos, p)
            if w is not None:
                work.append(w)
        if work:
            self._tokenize(work)
            self._score(work)
        out: list[Passage] = list(passages)
        dropped: list[Dropped] = []
        if not work:
            return StageOutput(tuple(out))
        costs = [self._costs(w) for w in work]
        totals = [int(c.sum()) for c in costs]
        budgets, rates = self._budgets(totals)
        removed: set[int] = set()
        for w, cost, total, budget, rate in zip(work, costs, totals, budgets, rates, strict=True):
            result = self._select(w, cost, total, budget, rate)
            if isinstance(result, str):
                dropped.append(self._drop(w.passage, result))
                removed.add(w.pos)
            else:
                out[w.pos] = result
        return StageOutput(tuple(p for i, p in enumerate(out) if i not in removed), tuple(dropped))

    # ------------------------------------------------------------------ steps

    def _words(self, pos: int, p: Passage) -> _Work | None:
        units = p.units("word")
        if not units:
            return None
        word_orig = np.asarray(units, dtype=np.int64).reshape(-1, 2)
        word_text = p.offset_map().to_text(word_orig)
        return _Work(pos, p, p.text, word_orig, word_text)

    def _tokenize(self, work: list[_Work]) -> None:
        texts = [w.text for w in work]
        with self._lock:  # fast tokenizers are not re-entrant
            enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        body = self.max_length - len(self._head) - len(self._tail)
        for w, ids, offsets in zip(work, enc["input_ids"], enc["offset_mapping"], strict=True):
            w.ids = np.asarray(ids, dtype=np.int64)
            w.codes = codes = _char_codes(w.text)
            w.space = space = _char_flags(codes, str.isspace)
            if not ids:  # nothing the model can see (e.g. only control characters)
                w.token_word = np.zeros(0, dtype=np.int64)
                w.windows = []
                continue
            if self._vocab is not None and int(w.ids.max()) >= self._vocab:
                raise ValueError(f"the tokenizer produced id {int(w.ids.max())} but the model's embedding table "
                                 f"has {self._vocab} rows: tokenizer and model do not match")
            starts = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
            n = len(w.text)
            # A sub-token belongs to the word holding its first non-space character
            # (sentencepiece's "▁" may point at the space before a word).
            tok_pos = _next_nonspace(space)[np.clip(starts, 0, n - 1)]
            word_starts = w.word_text[:, 0]
            w.token_word = np.maximum(np.searchsorted(word_starts, tok_pos, side="right") - 1, 0)
            w.windows = self._windows(w, tok_pos, body)

    def _windows(self, w: _Work, tok_pos: np.ndarray, body: int) -> list[tuple[int, int]]:
        """Sub-token ranges of at most ``body`` tokens, cut at sentence ends, else word ends."""
        n_tok = len(tok_pos)
        if n_tok <= body:
            return [(0, n_tok)]
        p = w.passage
        sent_text = p.offset_map().to_text(p.units("sentence"))[:, 0]
        assert w.token_word is not None
        sent_cuts = np.unique(np.searchsorted(tok_pos, sent_text, side="left"))
        word_cuts = np.flatnonzero(np.diff(w.token_word) != 0) + 1
        windows: list[tuple[int, int]] = []
        start = 0
        while n_tok - start > body:  # one iteration per window
            limit = start + body
            cut = limit
            for cuts in (sent_cuts, word_cuts):
                i = int(np.searchsorted(cuts, limit, side="right")) - 1
                if i >= 0 and cuts[i] > start:
                    cut = int(cuts[i])
                    break
            windows.append((start, cut))
            start = cut
        windows.append((start, n_tok))
        return windows

    def _score(self, work: list[_Work]) -> None:
        """Keep probability of every sub-token: all windows of all passages, length-sorted batches."""
        for w in work:
            w.probs = np.zeros(0, dtype=np.float32)
        items = [(k, a, b) for k, w in enumerate(work) for a, b in (w.windows or ())]
        if not items:
            return
        extra = len(self._head) + len(self._tail)
        results: list[np.ndarray | None] = [None] * len(items)
        for batch in self._counted_batches([b - a + extra for _, a, b in items]):
            for i, probs in zip(batch, self._forward(work, [items[i] for i in batch]), strict=True):
                results[i] = probs
        pieces: list[list[np.ndarray]] = [[] for _ in work]
        for (k, _, _), done in zip(items, results, strict=True):
            assert done is not None
            pieces[k].append(done)
        for w, parts in zip(work, pieces, strict=True):
            w.probs = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Positions of windows of ``lengths`` tokens (special tokens included) grouped into forward passes.

        Longest first, at most ``batch_size`` windows and ``max_batch_tokens``
        tokens (padding included) each, each padding at most a tenth of its
        tokens, in as few batches as that allows
        (:func:`ragprune.runtime.batching.packed_batches`).
        """
        return super().batches(lengths)

    def _legacy_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """The batching before packing: length-sorted batches under ``batch_size`` and a
        ``batch_size * max_length`` token cap (unless one was given), which on CPU were
        split further so that padding added at most a fifth."""
        size = self.batch_size if self.batch_size is not None else self._legacy_batch_size
        cap = self._requested_batch_tokens or size * self.max_length
        sorted_batches = length_sorted_batches(lengths, max_batch_size=size, max_batch_tokens=cap)
        if self._device.type != "cpu":
            return sorted_batches
        out: list[list[int]] = []
        for batch in sorted_batches:  # longest first within each batch
            current: list[int] = []
            real = 0
            for i in batch:  # per window
                n = int(lengths[i])
                if current and int(lengths[current[0]]) * (len(current) + 1) > _LEGACY_CPU_PADDING * (real + n):
                    out.append(current)
                    current, real = [], 0
                current.append(i)
                real += n
            out.append(current)
        return out

    def _warm(self, rows: int, width: int) -> None:
        import torch

        ids = torch.full((rows, width), self._pad_id, dtype=torch.int64, device=self._device)
        with torch.inference_mode():
            self.model(input_ids=ids, attention_mask=torch.ones_like(ids))

    def _forward(self, work: list[_Work], batch: list[tuple[int, int, int]]) -> list[np.ndarray]:
        import torch

        head, tail = self._head, self._tail
        longest = self.pad_width(max(b - a for _, a, b in batch) + len(head) + len(tail))
        ids = np.full((len(batch), longest), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for r, (k, a, b) in enumerate(batch):  # per window
            ids_k = work[k].ids
            assert ids_k is not None
            row: np.ndarray = np.concatenate((np.asarray(head, dtype=np.int64), ids_k[a:b],
                                              np.asarray(tail, dtype=np.int64)))
            ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        device = self._device
        with torch.inference_mode():
            logits = self.model(input_ids=torch.from_numpy(ids).to(device),
                                attention_mask=torch.from_numpy(mask).to(device)).logits
            keep = torch.softmax(logits.float(), dim=-1)[..., 1].cpu().numpy()
        h = len(head)
        return [keep[r, h : h + b - a] for r, (_, a, b) in enumerate(batch)]

    def _word_probs(self, w: _Work) -> np.ndarray:
        """Mean sub-token keep probability per word; a word with no sub-token takes the previous word's."""
        n_words = len(w.word_text)
        assert w.token_word is not None and w.probs is not None
        sums = np.bincount(w.token_word, weights=w.probs.astype(np.float64), minlength=n_words)
        counts = np.bincount(w.token_word, minlength=n_words)
        seen = counts > 0
        probs = np.where(seen, sums / np.maximum(counts, 1), 0.0)
        if not seen.all():
            last = np.maximum.accumulate(np.where(seen, np.arange(n_words), -1))
            first = int(np.argmax(seen))
            probs = probs[np.where(last >= 0, last, first)]
        return probs

    def _costs(self, w: _Work) -> np.ndarray:
        """Tokens each word costs in the counter, each word counted on its own (as
        LLMLingua-2 does); one per word for the default word counter."""
        n_words = len(w.word_text)
        if isinstance(self.counter, WordCounter):
            return np.ones(n_words, dtype=np.int64)
        words = [w.text[a:b].strip() for a, b in w.word_text.tolist()]
        if isinstance(self.counter, TiktokenCounter):
            costs = self._tiktoken_costs(words)
            if costs is not None:
                return costs
        return np.asarray(self.counter.count_many(words), dtype=np.int64)

    def _tiktoken_costs(self, words: list[str]) -> np.ndarray | None:
        """Per-word tiktoken counts from ONE encoding of the words joined by line breaks.

        tiktoken's pre-tokenizer never joins a word with the next line, so each
        token starts inside one word or on a separator (a separator token is
        charged to no word).
        """
        enc = getattr(self.counter, "_enc", None)
        if enc is None:
            return None
        if self._tiktoken_lengths is None:
            self._tiktoken_lengths = _token_byte_lengths(enc)
        joined = "\n".join(words)
        tokens = np.asarray(enc.encode_ordinary(joined), dtype=np.int64)
        lengths = self._tiktoken_lengths
        if tokens.size and int(tokens.max()) >= len(lengths):
            return None
        codes = _char_codes(joined)
        char_bytes = 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
        tok_bytes = lengths[tokens]
        if int(tok_bytes.sum()) != int(char_bytes.sum()):
            return None  # the encoder altered the text (e.g. lone surrogates)
        char_start = np.cumsum(char_bytes) - char_bytes
        tok_char = np.searchsorted(char_start, np.cumsum(tok_bytes) - tok_bytes, side="right") - 1
        word_len = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        word_start = np.cumsum(word_len + 1) - (word_len + 1)
        word = np.maximum(np.searchsorted(word_start, tok_char, side="right") - 1, 0)
        on_word = tok_char < word_start[word] + word_len[word]
        return np.bincount(word[on_word], minlength=len(words)).astype(np.int64)

    def _budgets(self, totals: list[int]) -> tuple[list[int | None], list[float | None]]:
        """Per-passage token budget (``None``: no cap) and percentile rate (``None``: threshold only)."""
        n = len(totals)
        if self.target_tokens is not None:
            targets: list[int] = allocate_tokens(totals, self.target_tokens, rank_bias=self.rank_bias)
            if self.rate is not None:
                caps = [math.ceil(self.rate * t - 1e-9) for t in totals]
                targets = [min(a, c) for a, c in zip(targets, caps, strict=True)]
        elif self.rate is not None:
            if self.rank_bias > 0 and n > 1:
                total = math.ceil(self.rate * sum(totals) - 1e-9)
                targets = allocate_tokens(totals, total, rank_bias=self.rank_bias)
            else:
                caps = [math.ceil(self.rate * t - 1e-9) for t in totals]
                rates: list[float | None] = [None if self.threshold is not None else self.rate] * n
                return list(caps), rates
        else:
            return [None] * n, [None] * n
        if self.threshold is not None:
            return list(targets), [None] * n
        return list(targets), [t / max(total, 1) for t, total in zip(targets, totals, strict=True)]

    def _select(self, w: _Work, cost: np.ndarray, total: int, budget: int | None,
                rate: float | None) -> Passage | str:
        """The compressed passage, or the reason it is dropped."""
        p = w.passage
        probs = self._word_probs(w)
        codes, space = w.codes, w.space
        assert codes is not None and space is not None
        starts, ends = w.word_text[:, 0], w.word_text[:, 1]
        forced = _force_words(w.text, codes, space, starts, ends, self._force_words, self.force_digits)
        ranked = np.where(forced, 1.0, probs)
        if budget is not None and budget <= 0:
            return "no tokens left in the token budget"
        if self.threshold is not None:
            keep = forced | (probs >= self.threshold)
        elif rate is None or rate >= 1.0:
            keep = np.ones(len(probs), dtype=bool)
        else:
            q = min(int(100 * max(0.0, 1.0 - rate) + 1), 100)
            cutoff = float(np.percentile(np.repeat(ranked, cost), q)) if cost.sum() else 1.0
            keep = (ranked > cutoff) | ((cutoff == 1.0) & (ranked == 1.0))
            if not keep.any():
                keep[int(np.argmax(ranked))] = True  # at least the best word, budget permitting
        if budget is not None and int(cost[keep].sum()) > budget:
            # The hard budget wins: force-kept words first, then by probability.
            idx = np.flatnonzero(keep)
            order = idx[np.lexsort((-probs[idx], ~forced[idx]))]
            fits = np.cumsum(cost[order]) <= budget
            keep = np.zeros_like(keep)
            keep[order[fits]] = True
        if not keep.any():
            if self.threshold is not None:
                return f"no word reached the keep threshold {self.threshold:g}"
            return "no word fits the token budget"
        out = self._keep_words(w, keep, codes)
        mean = float(probs.mean())
        if p.score is None:
            return out.with_score(self.name, mean)
        return out.replace(scores=(*out.scores, (self.name, mean)))

    def _keep_words(self, w: _Work, keep: np.ndarray, codes: np.ndarray) -> Passage:
        """The passage with the words of ``keep`` (and the whitespace force tokens)."""
        if keep.all():
            return w.passage  # every word: the passage as it is, its syntax (list markers, table pipes) included
        spans = w.word_orig[keep]
        span_list = list(zip(spans[:, 0].tolist(), spans[:, 1].tolist(), strict=True))
        if self._force_space:
            span_list.extend(self._space_spans(w, codes))
        return w.passage.keep_units(span_list)

    def _space_spans(self, w: _Work, codes: np.ndarray) -> list[tuple[int, int]]:
        """``original`` spans of whitespace force tokens (e.g. line breaks)."""
        p = w.passage
        text_pos: list[np.ndarray] = []
        lengths: list[int] = []
        for t in self._force_space:
            if len(t) == 1:
                hits = np.flatnonzero(codes == ord(t))
            else:
                import re

                hits = np.fromiter((m.start() for m in re.finditer(re.escape(t), w.text)), dtype=np.int64)
            text_pos.append(hits)
            lengths.extend([len(t)] * len(hits))
        if not lengths:
            return []
        pos = np.concatenate(text_pos)
        size = np.asarray(lengths, dtype=np.int64)
        start, ok = p.offset_map().to_original(pos, size)
        return list(zip(start[ok].tolist(), (start + size)[ok].tolist(), strict=True))


def _next_nonspace(space: np.ndarray) -> np.ndarray:
    """For each character, the position of the first non-space character at or after it
    (the last position when there is none)."""
    n = len(space)
    idx = np.where(space, n, np.arange(n))
    return np.minimum(np.minimum.accumulate(idx[::-1])[::-1], n - 1)


def _token_byte_lengths(enc: Any) -> np.ndarray:
    """Byte length of every token id of a tiktoken encoding (0 for unused ids)."""
    out = np.zeros(enc.n_vocab, dtype=np.int64)
    for i in range(enc.n_vocab):  # once per encoding
        try:
            out[i] = len(enc.decode_single_token_bytes(i))
        except KeyError:
            continue
    return out


def _model_device(model: Any) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
