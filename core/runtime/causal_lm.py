"""Token self-information from any causal language model, shared by the perplexity compressors.

:class:`CausalLMScorer` loads a causal LM (GPT-2, Llama, Qwen, SmolLM, ... or a
GGUF file) and computes ``-log p(token | prefix)`` for every token of a text.
Long texts are scored window after window with the KV cache carried from one
window to the next, so a context costs one forward pass per window; when the
cache would exceed ``max_context`` tokens it is rebuilt from the pinned prefix
(start token and conditioning text) plus the last ``max_context // 8`` tokens,
so memory stays flat however long the text is.  Many texts are scored in
length-sorted, bounded batches that advance window by window in lockstep; a
head (start token and prefix) shared by every text of a batch is fed once and
its KV cache repeated over the batch.  :meth:`CausalLMScorer.question_logprob_and_scores`
gives, from one pass, a question's log-probability after each context and the
context's own token scores.  ``CausalLMScorer.tokens_fed`` counts the tokens fed
through the model.

The module also holds the helpers the compressors share: mapping token scores
onto word/phrase/sentence units (vectorized with numpy) and picking the
highest-scoring units under a token target.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from ..budget import allocate_tokens
from ..passage import Passage
from ..text.segment import Span
from ..text.tokens import TokenCounter, WordCounter
from .batching import run_sorted
from .loading import LoadKwargs, LoadOptions, require_models
from .locks import TokenizerLock
from .validation import check_int

require_models("ragprune.runtime.causal_lm")

__all__ = [
    "CausalLMScorer",
    "TokenScores",
    "as_scorer",
    "group_spans",
    "token_targets",
    "select_units",
    "total_target",
    "unit_counts",
    "unit_scores",
]

logger = logging.getLogger("ragprune")


@dataclass(frozen=True, slots=True, eq=False)
class TokenScores:
    """Self-information of the tokens of one text.

    Attributes:
        offsets: ``(n, 2)`` int64 character offsets of each token in the text.
        scores: ``(n,)`` float64 ``-log p(token | everything before it)`` in nats.
    """

    offsets: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def total(self) -> float:
        return float(self.scores.sum())


@dataclass(frozen=True, slots=True)
class _Seq:
    ids: np.ndarray  # full token ids: start token, prefix, body
    pinned: int  # leading tokens kept in context when the cache is rebuilt
    score_from: int  # first position whose score is returned


class CausalLMScorer(TokenizerLock):
    """Token self-information from a causal LM, in KV-cached windows.

    Args:
        model: a local directory, a hub id, a path to a ``.gguf`` file, or a
            loaded ``PreTrainedModel`` (then ``tokenizer`` is required).
        tokenizer: a fast tokenizer, or a path/id; default: the model's.
        gguf_file: file name of a GGUF checkpoint inside the ``model`` directory
            (a ``model`` path ending in ``.gguf`` is split into both).
        options, device, dtype, local_files_only, revision: how a path or hub id is
            loaded (:class:`~ragprune.runtime.loading.LoadOptions` and its shorthands).
        max_context: most tokens the model attends to at once (default: the
            model's positions, at most 2048).  Bounds memory.
        window: tokens fed per forward pass (capped at ``max_context // 4``).
        batch_size: most texts scored together.
        max_batch_tokens: most tokens per batch (texts times the longest, up to
            ``max_context``); bounds the size of the logits.

    Attributes:
        tokens_fed: instrumentation: how many tokens (padding excluded, tokens
            re-fed when the cache is rebuilt included) this scorer has fed through
            the model so far; reset it to 0 to measure a call.
    """

    def __init__(
        self,
        model: Any = "HuggingFaceTB/SmolLM2-135M",
        tokenizer: Any = None,
        *,
        gguf_file: str | None = None,
        max_context: int | None = None,
        window: int = 512,
        batch_size: int = 16,
        max_batch_tokens: int = 2048,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        window = check_int("window", window, min=1)
        batch_size = check_int("batch_size", batch_size, min=1)
        max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1)
        max_context = check_int("max_context", max_context, min=16, allow_none=True)
        opts = LoadOptions.resolve(options, **load)
        self._model, tokenizer = self._load(model, tokenizer, gguf_file, opts)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("CausalLMScorer needs a fast tokenizer (offset mappings)")
        self._tok = tokenizer
        self._lock = threading.Lock()  # fast tokenizers are not re-entrant
        cfg = self._model.config
        positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
        self.max_context = int(max_context if max_context is not None else min(int(positions), 2048))
        if self.max_context > int(positions):
            raise ValueError(f"max_context {self.max_context} exceeds the model's {positions} positions")
        self.window = min(window, self.max_context // 4)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self._keep = self.max_context // 8
        self._pin_cap = self.max_context // 4
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self._start: list[int] = [] if start is None else [int(start)]
        pad = tokenizer.pad_token_id
        self._pad = int(pad if pad is not None else (start if start is not None else 0))
        self.device = next(self._model.parameters()).device
        self._cache_arg = cache_argument(self._model)
        self.tokens_fed = 0
        self._fed_lock = threading.Lock()
        self._share_prefix = True  # private switch (benchmarks): False feeds a shared head with every text

    @staticmethod
    def _load(model: Any, tokenizer: Any, gguf_file: str | None, opts: LoadOptions) -> tuple[Any, Any]:
        """The causal LM (a path, a hub id, a ``.gguf`` file or a loaded model) and its tokenizer."""
        from transformers import AutoModelForCausalLM

        from .loading import load_model, load_tokenizer

        extra: dict[str, Any] = {}
        if isinstance(model, (str, os.PathLike)):
            path = Path(str(model)).expanduser()
            if gguf_file is None and path.suffix.lower() == ".gguf":
                if not path.is_file():
                    from .loading import ModelLoadError

                    raise ModelLoadError(f"cannot load model: GGUF file {str(model)!r} does not exist")
                model, gguf_file = str(path.parent), path.name
            if gguf_file is not None:
                extra["gguf_file"] = gguf_file
            source = str(model)
            loaded = load_model(AutoModelForCausalLM, source, **opts.as_kwargs(), **extra)
            if tokenizer is None:
                tokenizer = source
        else:
            if tokenizer is None:
                raise ValueError("a loaded model needs its tokenizer: pass tokenizer=")
            loaded = model.eval()
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(str(tokenizer), local_files_only=opts.local_files_only,
                                       revision=opts.revision, **extra)
        return loaded, tokenizer

    def __repr__(self) -> str:
        name = getattr(self._model, "name_or_path", None) or type(self._model).__name__
        return f"CausalLMScorer({name!r}, max_context={self.max_context}, window={self.window})"

    # ------------------------------------------------------------------ tokens
    def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Token ids and ``(n, 2)`` character offsets of each text (no special tokens)."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
        out: list[tuple[np.ndarray, np.ndarray]] = [
            (np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)) for _ in texts
        ]
        todo = [i for i, t in enumerate(texts) if t]
        if todo:
            with self._lock:
                enc = self._tok([texts[i] for i in todo], add_special_tokens=False, return_offsets_mapping=True)
            for i, ids, offs in zip(todo, enc["input_ids"], enc["offset_mapping"], strict=True):
                out[i] = (np.asarray(ids, dtype=np.int64), np.asarray(offs, dtype=np.int64).reshape(-1, 2))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of model tokens in each text."""
        return [len(ids) for ids, _ in self.encode(texts)]

    # ----------------------------------------------------------------- scoring
    def token_scores(
        self, texts: Sequence[str], *, prefix: str | Sequence[str | None] | None = None
    ) -> list[TokenScores]:
        """Self-information of every token of each text, given ``prefix`` (if any).

        ``prefix`` is one text for all, or one per text (``None`` for none).  The
        prefix (its last ``max_context // 4`` tokens) stays in context for the
        whole text.  Scores of a long text are computed in windows; while the
        text fits in ``max_context`` they equal one full forward pass.  A prefix
        shared by the texts of a batch is fed once for the batch.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not a str")
        prefixes = self._prefixes(prefix, len(texts))
        bodies = self.encode(texts)
        pre_ids = self._encode_prefixes(prefixes)
        seqs, where = [], []
        for i, ((ids, _), pre) in enumerate(zip(bodies, pre_ids, strict=True)):
            if len(ids) == 0:
                continue
            room = max(0, self._pin_cap - len(self._start))
            head = np.asarray(self._start + pre[max(0, len(pre) - room):].tolist(), dtype=np.int64)
            seqs.append(_Seq(np.concatenate([head, ids]), len(head), len(head)))
            where.append(i)
        scored = self._score(seqs)
        out = [TokenScores(offs, np.zeros(len(ids), dtype=np.float64)) for ids, offs in bodies]
        for i, seq, s in zip(where, seqs, scored, strict=True):
            if seq.score_from == 0:  # no start token, no prefix: the first token has no context
                s[0] = float(np.mean(s[1:])) if len(s) > 1 else 0.0
            out[i] = TokenScores(bodies[i][1], s)
        return out

    def question_logprob(self, contexts: Sequence[str], question: str, *, separator: str = "\n\n") -> np.ndarray:
        """Mean log-probability per token of ``question`` following each context.

        Higher means the context makes the question more predictable (LongLLMLingua's
        coarse ranking).  A context is cut to its last tokens so that context and
        question fit in ``max_context``.  Contexts are batched.
        """
        return self._question_pass(contexts, question, separator, with_context=False)[0]

    def question_logprob_and_scores(
        self, contexts: Sequence[str], question: str, *, separator: str = "\n\n"
    ) -> tuple[np.ndarray, list[TokenScores | None]]:
        """:meth:`question_logprob` and each context's own token scores, from one forward pass.

        A causal model's scores for the context tokens of ``[start][context][separator
        + question]`` do not depend on the question after them, so the pass that
        ranks a context also yields ``token_scores([context])`` (equal up to float
        noise from the batch shapes).  A context cut to fit ``max_context`` with the
        question gets ``None``: score it with :meth:`token_scores` (windowed) if needed.
        """
        return self._question_pass(contexts, question, separator, with_context=True)

    def _question_pass(
        self, contexts: Sequence[str], question: str, separator: str, *, with_context: bool
    ) -> tuple[np.ndarray, list[TokenScores | None]]:
        if not isinstance(question, str):
            raise TypeError(f"question must be str, got {type(question).__name__}")
        if isinstance(contexts, str):
            raise TypeError("contexts must be a sequence of str, not a str")
        (q_ids, _), = self.encode([separator + question])
        q_ids = q_ids[: self.max_context // 2]
        if len(q_ids) == 0:  # nothing to rank by: at most the contexts' own scores
            own: list[TokenScores | None] = [*self.token_scores(contexts)] if with_context else [None] * len(contexts)
            return np.zeros(len(contexts), dtype=np.float64), own
        bodies = self.encode(contexts)
        room = self.max_context - len(q_ids) - len(self._start)
        whole = [len(ids) <= room for ids, _ in bodies]  # context not cut to fit with the question
        head = np.asarray(self._start, dtype=np.int64)
        seqs, q_from = [], []
        for (ids, _), fits in zip(bodies, whole, strict=True):
            full = np.concatenate([head, ids[len(ids) - min(len(ids), room):], q_ids])
            q_from.append(max(1, len(full) - len(q_ids)))
            # score the context tokens too only where the context was not cut
            seqs.append(_Seq(full, len(head), len(head) if with_context and fits else q_from[-1]))
        scored = self._score(seqs)
        logp = np.asarray([-float(np.mean(s[q - seq.score_from:]))
                           for s, q, seq in zip(scored, q_from, seqs, strict=True)], dtype=np.float64)
        plain: list[TokenScores | None] = [None] * len(contexts)
        for k, ((ids, offs), fits, s) in enumerate(zip(bodies, whole, scored, strict=True)):
            if with_context and fits:
                ctx = s[: len(ids)].copy()
                if len(head) == 0 and len(ctx):  # no start token: as token_scores, the first gets the mean
                    ctx[0] = float(np.mean(ctx[1:])) if len(ctx) > 1 else 0.0
                plain[k] = TokenScores(offs, ctx)
        return logp, plain

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _prefixes(prefix: str | Sequence[str | None] | None, n: int) -> list[str | None]:
        if prefix is None or isinstance(prefix, str):
            return [prefix] * n
        prefixes = list(prefix)
        if len(prefixes) != n:
            raise ValueError(f"got {len(prefixes)} prefixes for {n} texts")
        for i, p in enumerate(prefixes):
            if p is not None and not isinstance(p, str):
                raise TypeError(f"prefix[{i}] must be str or None, got {type(p).__name__}")
        return prefixes

    def _encode_prefixes(self, prefixes: list[str | None]) -> list[np.ndarray]:
        distinct = sorted({p for p in prefixes if p})
        enc = dict(zip(distinct, (ids for ids, _ in self.encode(distinct)), strict=True))
        empty = np.zeros(0, dtype=np.int64)
        return [enc[p] if p else empty for p in prefixes]

    def _score(self, seqs: list[_Seq]) -> list[np.ndarray]:
        if not seqs:
            return []
        vocab = self._model.get_input_embeddings().num_embeddings
        top = max(int(s.ids.max()) for s in seqs)
        if top >= vocab:
            raise ValueError(f"tokenizer produced id {top} but the model has only {vocab} embeddings: "
                             "tokenizer and model do not match")
        lengths = [min(len(s.ids), self.max_context) for s in seqs]
        return run_sorted(seqs, lengths, self._score_batch, max_batch_size=self.batch_size,  # type: ignore[return-value]
                          max_batch_tokens=self.max_batch_tokens)

    def _score_batch(self, batch: list[_Seq]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            return self._score_batch_inner(batch, torch)

    def _score_batch_inner(self, batch: list[_Seq], torch: Any) -> list[np.ndarray]:
        import torch.nn.functional as F

        n = len(batch)
        out = [np.zeros(len(s.ids) - s.score_from, dtype=np.float64) for s in batch]
        cursor = [0] * n
        next_pos = [0] * n
        cache: Any = None
        mask_hist: Any = None
        # Rebuild on a fixed schedule (not on the padded cache length), so a text's
        # scores do not depend on the texts batched with it.
        first_run = (self.max_context - self.window) // self.window
        later_run = (self.max_context - self._pin_cap - self._keep - self.window) // self.window
        steps_left = 0
        shared = self._shared_head(batch, out, torch) if self._share_prefix else None
        if shared is not None:  # the head is in the cache: the first window's rest follows it
            cache, mask_hist = shared
            cursor = [batch[0].pinned] * n
            next_pos = list(cursor)
            steps_left = first_run + 1
        while any(c < len(s.ids) for c, s in zip(cursor, batch, strict=True)):
            # windows end at multiples of the window (a shared head ends inside the first)
            ends = [min(len(s.ids), c - c % self.window + self.window) for c, s in zip(cursor, batch, strict=True)]
            rebuild = cache is None or steps_left <= 0
            steps_left = (first_run if cache is None else later_run) if rebuild else steps_left - 1
            rows: list[np.ndarray] = []
            ctx_len: list[int] = []
            for i, s in enumerate(batch):
                c, e = cursor[i], ends[i]
                if rebuild:
                    pin = min(s.pinned, c)
                    ctx = np.concatenate([s.ids[:pin], s.ids[max(pin, c - self._keep):c]])
                    if len(ctx) == 0 and e == c:
                        ctx = s.ids[:1]  # finished: one real token so no row is fully masked
                    rows.append(np.concatenate([ctx, s.ids[c:e]]))
                    ctx_len.append(len(ctx))
                else:
                    rows.append(s.ids[c:e])
                    ctx_len.append(0)
            width = max(len(r) for r in rows)
            ids = np.full((n, width), self._pad, dtype=np.int64)
            new_mask = np.zeros((n, width), dtype=np.int64)
            pos = np.zeros((n, width), dtype=np.int64)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = r
                new_mask[i, : len(r)] = 1
                start = 0 if rebuild else next_pos[i]
                pos[i] = start + np.minimum(np.arange(width), max(len(r) - 1, 0))
                next_pos[i] = start + len(r)
            with self._fed_lock:
                self.tokens_fed += int(new_mask.sum())
            t_mask = torch.from_numpy(new_mask).to(self.device)
            mask = t_mask if rebuild else torch.cat([mask_hist, t_mask], dim=1)
            result = self._model(
                input_ids=torch.from_numpy(ids).to(self.device),
                attention_mask=mask,
                position_ids=torch.from_numpy(pos).to(self.device),
                use_cache=True,
                **{self._cache_arg: None if rebuild else cache},
            )
            cache, mask_hist = result[self._cache_arg], mask
            logits = result.logits
            for i, s in enumerate(batch):
                c, e = cursor[i], ends[i]
                # position j of the new chunk predicts token j + 1 of the sequence
                lo, hi = max(c, s.score_from - 1), min(e, len(s.ids) - 1)
                if hi > lo:
                    rows_i = logits[i, ctx_len[i] + lo - c : ctx_len[i] + hi - c].float()
                    target = torch.from_numpy(s.ids[lo + 1 : hi + 1]).to(self.device)
                    nll = F.cross_entropy(rows_i, target, reduction="none")
                    out[i][lo + 1 - s.score_from : hi + 1 - s.score_from] = nll.cpu().numpy()
                cursor[i] = e
            del logits, result
        return out

    def _shared_head(self, batch: list[_Seq], out: list[np.ndarray], torch: Any) -> tuple[Any, Any] | None:
        """Feed the head (start token and prefix) common to every text of ``batch`` once.

        When all texts share the same pinned head (e.g. one question or instruction
        as the prefix of every text) and it ends inside the first window, its KV
        cache is computed for one row and repeated over the batch instead of being
        recomputed per text; the first body token of each text is scored from the
        head's last position (written to ``out``).  Returns the cache and its mask,
        or ``None`` (nothing fed) when the batch does not share a head.
        """
        h = batch[0].pinned
        if len(batch) < 2 or not 2 <= h < self.window:
            return None
        head = batch[0].ids[:h]
        if any(s.pinned != h or s.score_from != h or not np.array_equal(s.ids[:h], head) for s in batch):
            return None
        result = self._model(
            input_ids=torch.from_numpy(head[None, :]).to(self.device),
            attention_mask=torch.ones((1, h), dtype=torch.int64, device=self.device),
            position_ids=torch.arange(h, device=self.device)[None, :],
            use_cache=True,
            **{self._cache_arg: None},
        )
        with self._fed_lock:
            self.tokens_fed += h
        cache = result[self._cache_arg]
        if not hasattr(cache, "batch_repeat_interleave"):  # pragma: no cover - a legacy tuple cache
            return None
        cache.batch_repeat_interleave(len(batch))
        logp = torch.log_softmax(result.logits[0, -1].float(), dim=-1).cpu().numpy()
        for i, s in enumerate(batch):
            out[i][0] = -float(logp[s.ids[h]])
        return cache, torch.ones((len(batch), h), dtype=torch.int64, device=self.device)


def cache_argument(model: Any) -> str:
    """The name under which ``model.forward`` takes (and its output returns) the KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns,
    and goes in 5.40); read the installed model's signature once, at load time.
    """
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C-level or odd callable
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


# ---------------------------------------------------------------- unit helpers
def as_scorer(scorer: Any, **kwargs: Any) -> CausalLMScorer:
    """``scorer`` if it is a :class:`CausalLMScorer`, else a new one loading ``scorer``."""
    if isinstance(scorer, CausalLMScorer):
        if kwargs:
            raise ValueError(f"scorer options {sorted(kwargs)} need a model path, not a CausalLMScorer")
        return scorer
    return CausalLMScorer(scorer, **kwargs)


def total_target(total: int, rate: float | None, target_tokens: int | None) -> int:
    """Tokens to keep out of ``total``: the tighter of ``rate`` and ``target_tokens``."""
    limits = [total]
    if rate is not None:
        limits.append(int(math.floor(rate * total + 1e-9)))
    if target_tokens is not None:
        limits.append(target_tokens)
    return min(limits)


def group_spans(units: Sequence[Span], groups: np.ndarray) -> list[Span]:
    """One span per group of consecutive units (``groups``: non-decreasing ids 0..g-1)."""
    if not len(units):
        return []
    u = np.asarray(units, dtype=np.int64).reshape(-1, 2)
    first = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    last = np.r_[first[1:] - 1, len(groups) - 1]
    return list(zip(u[first, 0].tolist(), u[last, 1].tolist(), strict=True))


def token_targets(
    passages: Sequence[Passage],
    counter: TokenCounter,
    rate: float | None,
    target_tokens: int | None,
    *,
    rank_bias: float = 0.0,
) -> tuple[list[int], list[int]]:
    """Tokens of each passage's text and its share of the overall target, in the given (rank) order."""
    totals = counter.count_many([p.text for p in passages]) if passages else []
    total = total_target(sum(totals), rate, target_tokens)
    return totals, allocate_tokens(totals, total, rank_bias=rank_bias)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


_SPACES = np.asarray([ord(c) for c in map(chr, range(0x3001)) if c.isspace()], dtype=np.uint32)


def unit_scores(text: str, scores: TokenScores, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of token self-information and number of tokens falling in each unit.

    ``units`` are ``(n, 2)`` sorted, non-overlapping offsets in ``text``.  A token
    belongs to the units holding its characters from its first non-space
    character to its last; a token covering several units (e.g. several CJK
    characters) is shared equally among them.  Tokens outside every unit
    (whitespace between kept pieces) are ignored.
    """
    m = len(units)
    if m == 0 or len(scores) == 0:
        return np.zeros(m), np.zeros(m)
    space = np.isin(_codepoints(text), _SPACES)
    n_chars = len(space)
    idx = np.arange(n_chars)
    prev_ns = np.maximum.accumulate(np.where(space, -1, idx))  # last non-space at or before i
    nxt = np.where(space, n_chars, idx)
    next_ns = np.minimum.accumulate(nxt[::-1])[::-1]  # first non-space at or after i
    s = np.clip(scores.offsets[:, 0], 0, n_chars)
    e = np.clip(scores.offsets[:, 1], 0, n_chars)
    ok = e > s
    s, e, val = s[ok], e[ok], scores.scores[ok]
    first = next_ns[s]
    blank = first >= e
    first = np.where(blank, s, first)
    last = np.where(blank, s, np.maximum(prev_ns[e - 1], first))
    starts, ends = units[:, 0], units[:, 1]

    def unit_of(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(starts, x, side="right") - 1
        inside = (k >= 0) & (x < ends[np.clip(k, 0, m - 1)])
        return np.where(inside, k, -1)

    f, l_ = unit_of(first), unit_of(last)
    f = np.where(f < 0, l_, f)
    l_ = np.where(l_ < 0, f, l_)
    keep = f >= 0
    f, l_, val = f[keep], l_[keep], val[keep]
    span = l_ - f + 1
    rep = np.repeat(np.arange(len(f)), span)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(span) - span, span)
    target = f[rep] + offset
    share = 1.0 / span[rep]
    sums = np.bincount(target, weights=val[rep] * share, minlength=m)
    counts = np.bincount(target, weights=share, minlength=m)
    return sums, counts


def unit_counts(passage: Passage, units: Sequence[Span], counter: TokenCounter, *, words: bool = False) -> np.ndarray:
    """Tokens of each unit in ``counter``; ``words=True`` says the units are word units,
    which the default word counter counts as one token each (no counting needed)."""
    if not units:
        return np.zeros(0, dtype=np.int64)
    original = passage.original or ""
    if words and type(counter) is WordCounter:
        return np.ones(len(units), dtype=np.int64)
    return np.asarray(counter.count_many([original[a:b] for a, b in units]), dtype=np.int64)


def select_units(
    passage: Passage,
    units: Sequence[Span],
    priority: np.ndarray,
    counts: np.ndarray,
    target: int,
    counter: TokenCounter,
) -> Passage:
    """Keep the highest-``priority`` units whose tokens fit in ``target``, in text order.

    Units are taken best first (ties: earlier first) while the running token
    count stays within ``target``; the rendered text is then counted and, if
    rendering made it longer than ``target``, the lowest kept units are shed.
    """
    if target <= 0 or not units:
        return passage.with_spans(())
    order = np.lexsort((np.arange(len(units)), -np.asarray(priority, dtype=np.float64)))
    fits = np.cumsum(counts[order]) <= target
    k = int(np.argmin(fits)) if not fits.all() else len(order)
    arr = list(units)

    def build(k: int) -> Passage:
        chosen = np.sort(order[:k])
        return passage.keep_units([arr[j] for j in chosen])

    best = build(k)
    if counter.count(best.text) <= target:
        return best
    lo, hi, best = 0, k - 1, passage.with_spans(())
    while lo <= hi:  # largest k whose rendered text fits
        mid = (lo + hi) // 2
        cand = build(mid)
        if counter.count(cand.text) <= target:
            best, lo = cand, mid + 1
        else:
            hi = mid - 1
    return best
