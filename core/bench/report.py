"""Write a benchmark's results: JSON (every case), a markdown table, PNG plots."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .runner import BenchResult, MethodResult, PointResult

__all__ = ["Goal", "closest_to_goal", "recall_at", "structured_rows", "to_dict", "write_json", "markdown",
           "write_markdown", "write_plots", "write_all"]


@dataclass(frozen=True)
class Goal:
    """A target trade-off: keep at most ``max_kept`` of the tokens with enough evidence and answers."""

    max_kept: float = 0.35
    min_recall: float = 0.90
    min_answer: float = 0.95

    def shortfall(self, p: PointResult) -> float:
        """0 when the point meets the goal; else the summed relative misses."""
        s = p.summary
        recall = s.recall if s.recall is not None else 0.0
        answer = s.answer_retention if s.answer_retention is not None else 0.0
        return (max(0.0, s.kept_fraction - self.max_kept) / self.max_kept
                + max(0.0, self.min_recall - recall) / self.min_recall
                + max(0.0, self.min_answer - answer) / self.min_answer)


def closest_to_goal(result: BenchResult, goal: Goal | None = None) -> list[tuple[str, float, float]]:
    """``(method, point, shortfall)`` for every method's best point, best first."""
    goal = goal or Goal()
    best: list[tuple[str, float, float]] = []
    for m in result.methods:
        p = min(m.points, key=goal.shortfall)
        best.append((m.name, p.point, goal.shortfall(p)))
    return sorted(best, key=lambda t: t[2])


def _clean(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def to_dict(result: BenchResult, *, with_cases: bool = True) -> dict[str, Any]:
    """Everything measured, as plain JSON-ready data."""
    methods = []
    for m in result.methods:
        points = []
        for p in m.points:
            d: dict[str, Any] = {"point": p.point, "is_default": p.is_default,
                                 "summary": dataclasses.asdict(p.summary)}
            if with_cases:
                d["cases"] = [dict(dataclasses.asdict(c), kept_fraction=c.kept_fraction, recall=c.recall)
                              for c in p.cases]
            points.append(d)
        methods.append({"name": m.name, "info": m.info, "load_seconds": m.load_seconds,
                        "score_seconds": m.score_seconds, "peak_rss_delta_mb": m.peak_rss_delta_mb,
                        "peak_cuda_mb": m.peak_cuda_mb, "notes": list(m.notes), "points": points})
    goal = Goal()
    cleaned: dict[str, Any] = _clean({
        "n_cases": result.n_cases, "counter": result.counter, "min_coverage": result.min_coverage,
        "wall_seconds": result.wall_seconds, "settings": result.settings,
        "skipped": [{"method": n, "why": w} for n, w in result.skipped],
        "goal": dataclasses.asdict(goal),
        "closest_to_goal": [{"method": n, "point": pt, "shortfall": s} for n, pt, s in closest_to_goal(result, goal)],
        "methods": methods,
    })
    return cleaned


def write_json(result: BenchResult, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_dict(result), indent=1), encoding="utf-8")
    return path


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def _point(m: MethodResult, p: PointResult) -> str:
    param = m.info.get("parameter") or ""
    if not param:
        return "-"
    v = int(p.point) if float(p.point).is_integer() and param in ("top_n", "k") else p.point
    return f"{param}={v}"


_HEAD = ("| method | setting | tokens kept | sup. sent. recall | all gold kept | answer kept | passages dropped "
         "| gold passages dropped | unans. emptied | off-topic dropped "
         "| p50 ms | p90 ms | tokens/s | peak RSS MB | load s |")
_VALID_HEAD = " valid |"


def _has_validity(result: BenchResult) -> bool:
    return any(p.summary.valid_share is not None for m in result.methods for p in m.points)


def _row(m: MethodResult, p: PointResult, valid: bool = False) -> str:
    s = p.summary
    mem = "-" if m.peak_rss_delta_mb is None else f"{m.peak_rss_delta_mb:.0f}"
    return (f"| {m.name} | {_point(m, p)} | {_f(s.kept_fraction)} | {_f(s.recall)} | {_f(s.all_gold_kept)} "
            f"| {_f(s.answer_retention)} | {_f(s.passage_drop_rate)} | {_f(s.gold_passage_drop_rate)} "
            f"| {_f(s.unanswerable_emptied)} | {_f(s.offtopic_drop_rate)} "
            f"| {_ms(s.latency_p50)} | {_ms(s.latency_p90)} | {s.tokens_per_second:,.0f} | {mem} "
            f"| {m.load_seconds:.1f} |" + (f" {_pct(s.valid_share)} |" if valid else ""))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def recall_at(m: MethodResult, x: float, attr: str = "mean_tokens_after") -> float | None:
    """``m``'s recall where its sweep reaches ``x`` of ``attr`` (linear between points; ``None`` outside)."""
    pts = sorted((float(getattr(p.summary, attr)), p.summary.recall) for p in m.points
                 if p.summary.recall is not None)
    if not pts or not pts[0][0] - 1e-9 <= x <= pts[-1][0] + 1e-9:
        return None
    return float(np.interp(x, [a for a, _ in pts], [float(b) for _, b in pts]))


def _reference(result: BenchResult, m: MethodResult) -> MethodResult | None:
    """The plain-text run of the same method (same units when there is one)."""
    plain = [x for x in result.methods if x.info.get("render") == "plain" and x.info.get("base") == m.info["base"]]
    same = [x for x in plain if x.info.get("structure") == m.info.get("structure")]
    found = same or plain
    return found[0] if found else None


_STRUCT_HEAD = ("| method | render | units | setting | tokens kept | tokens / case | sup. sent. recall | valid "
                "| recall at plain's tokens / case | Δ | recall at plain's tokens kept | Δ |")


def _delta(x: float | None, ref: float | None) -> str:
    return "-" if x is None or ref is None else f"{x - ref:+.3f}"


def structured_rows(result: BenchResult) -> list[str]:
    """Each method at its default point, per rendering and units, against its plain-text run."""
    rows = []
    for m in sorted((m for m in result.methods if "render" in m.info), key=lambda m: m.info["base"]):
        p = m.default()
        s = p.summary
        ref = _reference(result, m)
        ref_s = ref.default().summary if ref is not None else None
        at_tokens = recall_at(m, ref_s.mean_tokens_after) if ref_s is not None else None
        at_kept = recall_at(m, ref_s.kept_fraction, "kept_fraction") if ref_s is not None else None
        ref_recall = ref_s.recall if ref_s is not None else None
        units = {"auto": "structure", "prose": "sentences"}.get(m.info.get("structure", ""), "-")
        rows.append(f"| {m.info['base']} | {m.info['render']} | {units} | {_point(m, p)} | {_f(s.kept_fraction)} "
                    f"| {s.mean_tokens_after:.0f} | {_f(s.recall)} | {_pct(s.valid_share)} | {_f(at_tokens)} "
                    f"| {_delta(at_tokens, ref_recall)} | {_f(at_kept)} | {_delta(at_kept, ref_recall)} |")
    return rows


def _structured_section(result: BenchResult) -> list[str]:
    if not any("render" in m.info for m in result.methods) or len(result.methods) < 2:
        return []
    sep = "|" + "---|" * (_STRUCT_HEAD.count("|") - 1)
    return ["", "## Structured context: each method at its default setting, per rendering", "", _STRUCT_HEAD, sep,
            *structured_rows(result), "",
            "units: structure = structure-aware units (structure=\"auto\"), sentences = plain sentence units "
            "(structure=\"prose\"), - = a peer that reads the text alone. Recall at plain's tokens / case (or "
            "tokens kept): this method's sweep, interpolated linearly, where it keeps as many tokens per case (or "
            "the same fraction) as the same method at its default setting on the plain passages; Δ = that minus "
            "the plain recall."]


def markdown(result: BenchResult, *, title: str = "ragprune bench", command: str | None = None) -> str:
    """The summary table (each method at its default point), the full sweep and the definitions."""
    valid = _has_validity(result)
    head = _HEAD + (_VALID_HEAD if valid else "")
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = [f"# {title}", ""]
    st = result.settings
    lines.append(f"{result.n_cases} cases ({st.get('data', 'data')}); tokens counted with {result.counter}; "
                 f"wall time {result.wall_seconds:.1f} s.")
    if command:
        lines += ["", f"Command: `{command}`"]
    if st.get("renders"):
        lines += ["", f"Rendered as: {', '.join(st['renders'])}; units: {', '.join(st.get('structures', []))}."]
    lines += ["", "## Each method at its default setting", "", head, sep]
    lines += [_row(m, m.default(), valid) for m in result.methods]
    lines += _structured_section(result)
    lines += ["", "## Full sweep (one scoring pass per scored method)", "", head, sep]
    lines += [_row(m, p, valid) for m in result.methods for p in m.points]
    goal = Goal()
    ranked = closest_to_goal(result, goal)
    if ranked:
        lines += ["", f"## Closest to: tokens kept <= {goal.max_kept}, recall >= {goal.min_recall}, "
                      f"answer kept >= {goal.min_answer}", ""]
        for name, pt, short in ranked:
            m = next(x for x in result.methods if x.name == name)
            p = next(x for x in m.points if x.point == pt)
            state = "meets it" if short == 0 else f"shortfall {short:.3f}"
            lines.append(f"- {name} {_point(m, p)}: {state} (kept {_f(p.summary.kept_fraction)}, recall "
                         f"{_f(p.summary.recall)}, answer {_f(p.summary.answer_retention)})")
    notes = [(m.name, n) for m in result.methods for n in m.notes]
    if result.skipped or notes:
        lines += ["", "## Notes", ""]
        lines += [f"- skipped {n}: {w}" for n, w in result.skipped]
        lines += [f"- {n}: {w}" for n, w in notes]
    lines += ["", "## Definitions", "",
              "- tokens kept: tokens of the kept text / tokens of the original passages (each passage counted "
              "on its own), summed over cases.",
              f"- sup. sent. recall: gold supporting sentences that survive / all gold sentences. With kept spans "
              f"(ragprune stages) a sentence survives when >= {result.min_coverage:g} of its non-space characters "
              "are kept; with text (peers that rewrite it) when its normalized text is a substring of the passage's "
              "normalized output. all gold kept: cases with every gold sentence surviving.",
              "- answer kept: a normalized gold answer occurs on word boundaries in the kept text; answerable "
              "cases only (answer present in the passages and not yes/no).",
              "- unans. emptied: among cases labelled unanswerable (metadata answerable = false, as in the "
              "out-of-domain cases of ragprune.bench.ood), the share where every passage was dropped (dropped or "
              "nothing kept); - when no case carries that label (HotpotQA).",
              "- off-topic dropped: passages labelled off-topic (metadata offtopic: passages of other documents "
              "than the one the question is about) that were dropped or kept nothing / all such passages; - when "
              "no case carries that label.",
              "- latency: seconds of the compression call per case (scored methods: the one scoring pass plus "
              "the selection at that setting); models are loaded before timing. tokens/s: original tokens / "
              "total compression seconds.",
              "- peak RSS: peak resident memory while loading and running the method minus the RSS before "
              "loading (sampled every 10 ms); torch, transformers and sentence-transformers are imported "
              "before the first method, so no method pays for them.",
              "- valid: kept texts that still parse / kept texts, for documents rendered as JSON (json.loads), "
              "markdown (every table keeps a header row, every fence is closed) or HTML (tags balance, implied "
              "end tags of p, li, tr, td, th allowed); see ragprune.bench.structured.",
              "- token-classifier and llmlingua2 run the same MiniLM token classifier with an untrained random "
              "head: their evidence and answer figures mean nothing; they are there for speed and cost.",
              ""]
    return "\n".join(lines)


def write_markdown(result: BenchResult, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    path = Path(path)
    path.write_text(markdown(result, **kwargs), encoding="utf-8")
    return path


def write_plots(result: BenchResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``tradeoff.png`` (tokens kept vs recall and vs answer kept) and ``latency.png`` (p50 with p90)."""
    # Figures drawn on the Agg canvas directly: no pyplot, no process-wide backend choice.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    paths: list[Path] = []
    fig = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for m in result.methods:
        xs = [p.summary.kept_fraction for p in m.points]
        for ax, attr in zip(axes, ("recall", "answer_retention"), strict=True):
            ys = [getattr(p.summary, attr) for p in m.points]
            if any(y is None for y in ys):
                continue
            style = "--" if m.info.get("peer") else "-"
            ax.plot(xs, ys, style, marker="o" if len(xs) > 1 else "s", label=m.name)
    goal = Goal()
    right = max([1.0, *[p.summary.kept_fraction for m in result.methods for p in m.points]]) + 0.05
    for ax, ylabel, target in zip(axes, ("supporting-sentence recall", "answer kept"),
                                  (goal.min_recall, goal.min_answer), strict=True):
        ax.axvline(goal.max_kept, color="grey", lw=0.8, ls=":")
        ax.axhline(target, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(f"fraction of tokens kept ({result.counter})")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, right)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Trade-off on {result.n_cases} cases")
    paths.append(out / "tradeoff.png")
    fig.savefig(paths[-1], dpi=110)

    fig = Figure(figsize=(max(6, 0.9 * len(result.methods) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = [m.name for m in result.methods]
    p50 = [m.default().summary.latency_p50 * 1000 for m in result.methods]
    p90 = [m.default().summary.latency_p90 * 1000 for m in result.methods]
    ax.bar(names, p50, label="p50")
    spread = np.asarray([[0.0] * len(p50), [max(0.0, b - a) for a, b in zip(p50, p90, strict=True)]])
    ax.errorbar(names, p50, yerr=spread,
                fmt="none", ecolor="black", capsize=4, label="p90")
    ax.set_ylabel("ms per case (default setting)")
    ax.tick_params(axis="x", rotation=35)
    ax.legend()
    paths.append(out / "latency.png")
    fig.savefig(paths[-1], dpi=110)
    return paths


def write_all(result: BenchResult, out_dir: str | os.PathLike[str], *, plots: bool = True,
              command: str | None = None) -> list[Path]:
    """``results.json``, ``results.md`` and the plots under ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json(result, out / "results.json"), write_markdown(result, out / "results.md", command=command)]
    if plots and result.methods:
        paths += write_plots(result, out)
    return paths
