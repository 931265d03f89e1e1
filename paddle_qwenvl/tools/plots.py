"""Pictures of measurements (matplotlib, the bench extra), written as PNG files.

serve_bench_plot   bench-serve: TTFT, ITL and end-to-end latency distributions per run, and
                   throughput against concurrency when several concurrencies were run
comparison_plot    eval --compare: the two runs' scores, overall and per group
stage_bars         scripts/bench_vs_hf.py: seconds per stage, ours beside HF's
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")          # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _ecdf(ax, values_ms: Sequence[float], label: str) -> None:
    values = np.sort(np.asarray(values_ms, dtype=np.float64))
    if values.size:
        ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=label)


def serve_bench_plot(runs: List[Tuple[str, list]], throughputs: List[Tuple[str, dict]], path: str,
                     title: str) -> None:
    """runs: (label, [RequestResult]) per run; throughputs: (label, summary) per run."""
    plt = _pyplot()
    swept = len(runs) > 1
    fig, axes = plt.subplots(1, 4 if swept else 3, figsize=(17 if swept else 13, 4.2))
    panels = (("time to first token (ms)", lambda r: [r.ttft]),
              ("inter-token latency (ms)", lambda r: r.itl),
              ("end-to-end latency (ms)", lambda r: [r.latency]))
    for ax, (name, values) in zip(axes, panels):
        for label, results in runs:
            _ecdf(ax, [1000 * v for r in results if r.ok for v in values(r)], label)
        ax.set(xlabel=name, ylabel="fraction of requests (<= x)" if "inter" not in name else "fraction of gaps (<= x)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if swept:
        _throughput_panel(axes[3], throughputs)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _throughput_panel(ax, throughputs: List[Tuple[str, dict]]) -> None:
    """Output tokens/s per run as bars, each labelled with its requests/s."""
    words = [label.rsplit(" ", 1) for label, _ in throughputs]
    x = np.arange(len(throughputs))
    bars = ax.bar(x, [s["output_token_throughput"] for _, s in throughputs], color="tab:gray")
    ax.bar_label(bars, labels=[f"{s['request_throughput']:.2f} req/s" for _, s in throughputs], fontsize=8)
    ax.set(xticks=x, xticklabels=[w[-1] for w in words], xlabel=words[0][0] if len(words[0]) > 1 else "run",
           ylabel="output tokens/s", title="throughput")
    ax.margins(y=0.15)
    ax.grid(alpha=0.3, axis="y")


def comparison_plot(result: dict, name_a: str, name_b: str, path: str) -> None:
    """Grouped bars: score of A and of B, overall then per group (eval.compare.compare_runs's result)."""
    plt = _pyplot()
    labels = ["overall"] + list(result["groups"])
    scores = [(result["score_a"], result["score_b"])] + [tuple(v) for v in result["groups"].values()]
    x, width = np.arange(len(labels)), 0.38
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(labels) + 2), 4))
    for i, name in enumerate((name_a, name_b)):
        bars = ax.bar(x + (i - 0.5) * width, [s[i] for s in scores], width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set(xticks=x, xticklabels=labels, ylabel="score (%)", ylim=(0, 115),
           title=f"{result['items']} items; same answer on {result['agreement']:.1f}%")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_bars(stages: Dict[str, Tuple[float, ...]], names: Tuple[str, ...], path: str, title: str) -> None:
    """Horizontal bars of seconds per stage: stages[stage] holds one value per name (side)."""
    plt = _pyplot()
    labels = list(stages)
    y, height = np.arange(len(labels)), 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(labels) + 1.5))
    for i, name in enumerate(names):
        offset = (i - (len(names) - 1) / 2) * height
        bars = ax.barh(y + offset, [stages[s][i] for s in labels], height, label=name)
        ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
    ax.set(yticks=y, yticklabels=labels, xlabel="seconds (lower is better)", title=title)
    ax.margins(x=0.12)
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
