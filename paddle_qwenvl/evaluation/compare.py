"""Two runs of one task side by side (e.g. bf16 against int4): how often they answer alike and how
their scores differ, over the items both answered."""
from pathlib import Path
from typing import List

from .datasets import read_jsonl
from .metrics import normalize_vqa_answer
from .runner import format_table


def read_run(path) -> List[dict]:
    records = read_jsonl(Path(path))
    if not records or any("score" not in r or "question_id" not in r for r in records):
        raise ValueError(f"{path}: not the --json output of `paddle-qwenvl eval` (records need question_id "
                         "and score); score a predictions file first with --score PRED --json OUT")
    return records


def same_answer(a: dict, b: dict) -> bool:
    """Multiple choice: the same option read; otherwise equal after VQA answer normalisation."""
    if "choice" in a and "choice" in b:
        return a["choice"] == b["choice"]
    return normalize_vqa_answer(a["answer"]) == normalize_vqa_answer(b["answer"])


def compare_runs(run_a: List[dict], run_b: List[dict]) -> dict:
    """{items, agreement, score_a, score_b, difference (b - a), better_a, better_b, groups} in percent."""
    by_id = {str(r["question_id"]): r for r in run_b}
    pairs = [(a, by_id[str(a["question_id"])]) for a in run_a if str(a["question_id"]) in by_id]
    if not pairs:
        raise ValueError("the two runs share no question_id: are they runs of the same task and data?")
    score_a, score_b = (_mean([pair[i]["score"] for pair in pairs]) for i in (0, 1))
    groups = sorted({a.get("group") for a, _ in pairs if a.get("group")})
    return dict(items=len(pairs), agreement=_mean([same_answer(a, b) for a, b in pairs]),
                score_a=score_a, score_b=score_b, difference=round(score_b - score_a, 2),
                better_a=sum(a["score"] > b["score"] for a, b in pairs),
                better_b=sum(b["score"] > a["score"] for a, b in pairs),
                groups={g: [_mean([p[i]["score"] for p in pairs if p[0].get("group") == g]) for i in (0, 1)]
                        for g in groups})


def _mean(values) -> float:
    values = list(values)
    return round(100 * sum(values) / len(values), 2)


def format_comparison(result: dict, name_a: str, name_b: str) -> str:
    rows = [("", "A", "B"), ("run", name_a, name_b),
            ("score", f"{result['score_a']:.2f}", f"{result['score_b']:.2f}"),
            ("items scored higher", str(result["better_a"]), str(result["better_b"]))]
    rows += [(f"  {g}", f"{a:.2f}", f"{b:.2f}") for g, (a, b) in result["groups"].items()]
    return (format_table(rows) + f"\n{result['items']} items in both runs; same answer on {result['agreement']:.2f}%; "
            f"B - A = {result['difference']:+.2f} points")
