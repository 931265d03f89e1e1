"""Answering a task's items into a resumable JSONL of predictions, scoring predictions, the summary.

A prediction record (one JSONL line): question_id, question, answer (the model's text), references,
score (0..1), group, and for multiple choice the option letter read from the answer ("choice")."""
import json
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .datasets import Item, read_jsonl
from .tasks import Task

AnswerBatch = Callable[[List[List[dict]]], List[str]]      # chat messages of each item -> answers


def make_record(task: Task, item: Item, answer: str) -> dict:
    score, choice = task.score(item, answer)
    record = dict(question_id=item.question_id, question=item.question, answer=answer,
                  references=item.references, score=score, group=item.group)
    return dict(record, choice=choice) if item.options else record


def read_predictions(path) -> Dict[str, str]:
    """question_id -> answer, from a JSONL of {"question_id", "answer"} lines."""
    answers = {}
    for number, row in enumerate(read_jsonl(Path(path)), 1):
        if not isinstance(row, dict) or "question_id" not in row or "answer" not in row:
            raise ValueError(f"{path}: prediction {number} needs 'question_id' and 'answer' fields")
        answers[str(row["question_id"])] = str(row["answer"])
    return answers


def run_task(task: Task, items: List[Item], answer_batch: AnswerBatch, out_path=None, batch_size: int = 8,
             progress: bool = True) -> List[dict]:
    """Records of every item: answers already in `out_path` are kept, the rest are asked for in
    batches and appended as they come (so an interrupted run resumes where it stopped)."""
    done = read_predictions(out_path) if out_path and Path(out_path).is_file() else {}
    pending = [item for item in items if item.question_id not in done]
    from tqdm import tqdm
    sink = open(out_path, "a", encoding="utf-8") if out_path else nullcontext()
    with tqdm(total=len(items), initial=len(items) - len(pending), desc=task.name, unit="item",
              disable=not progress) as bar, sink as out:
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            for item, answer in zip(batch, answer_batch([task.prompt(item) for item in batch])):
                done[item.question_id] = answer
                if out:
                    out.write(json.dumps(make_record(task, item, answer), ensure_ascii=False) + "\n")
            if out:
                out.flush()
            bar.update(len(batch))
    return [make_record(task, item, done[item.question_id]) for item in items]


def score_predictions(task: Task, items: List[Item], predictions: Dict[str, str]) -> Tuple[List[dict], List[str]]:
    """(records, notes): an item with no prediction scores 0, a prediction for no item is noted."""
    records = [dict(make_record(task, item, predictions.get(item.question_id, "")),
                    **({} if item.question_id in predictions else {"missing": True})) for item in items]
    notes = []
    missing = sum(r.get("missing", False) for r in records)
    if missing:
        notes.append(f"{missing} items have no prediction (scored 0)")
    unknown = len(set(predictions) - {item.question_id for item in items})
    if unknown:
        notes.append(f"{unknown} predictions name no item of the data (ignored)")
    return records, notes


def summarize(task: Task, records: List[dict]) -> dict:
    """{task, metric, items, score (percent), groups: {group: {items, score}}}."""
    groups = defaultdict(list)
    for record in records:
        if record.get("group"):
            groups[record["group"]].append(record["score"])
    return dict(task=task.name, metric=task.metric, items=len(records), score=_percent([r["score"] for r in records]),
                groups={g: dict(items=len(s), score=_percent(s)) for g, s in sorted(groups.items())})


def _percent(scores: List[float]) -> Optional[float]:
    return round(100 * sum(scores) / len(scores), 2) if scores else None


def format_summary(summary: dict) -> str:
    rows = [("task", "metric", "items", "score"),
            (summary["task"], summary["metric"], str(summary["items"]), _show(summary["score"]))]
    rows += [(f"  {group}", "", str(g["items"]), _show(g["score"])) for group, g in summary["groups"].items()]
    return format_table(rows)


def _show(score: Optional[float]) -> str:
    return "-" if score is None else f"{score:.2f}"


def format_table(rows: List[Tuple[str, ...]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))).rstrip() for row in rows)
