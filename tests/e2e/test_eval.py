"""`paddle-qwenvl eval` as users run it: hand-written predictions scored with --score, the tiny
model answering the bundled sets in-process and through `--api-base` (the same answers), a run
resumed from its JSONL, and --compare with --plot."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from paddle_qwenvl.evaluation.datasets import read_dataset
from paddle_qwenvl.evaluation.tasks import get_task

from ..eval_data import write_dataset
from .conftest import _env, assert_clean_error
from .test_serve import KEY, server  # noqa: F401  (the server fixture: tiny model on loopback)

TASKS = ("textvqa", "docvqa", "chartqa", "mmmu", "videomme")
FAST = ("--max-new-tokens", "6", "--max-model-len", "1024")

# hand-written predictions and the score each must get (see tests/unit/test_eval_metrics.py)
PREDICTIONS = {
    "textvqa": ({"101": "halt", "102": "3"}, "45.00"),                    # 1 human: 0.3; 2 humans: 0.6
    "docvqa": ({"7": "12 march 1998", "8": "Jon Smith"}, "95.00"),        # 1.0; 1 - 1/10
    "chartqa": ({"0": "62", "1": "right"}, "50.00"),                     # 3.3% off: 1; wrong text: 0
    "mmmu": ({"validation_Art_1": "(B) square", "validation_Math_2": "A"}, "50.00"),
    "videomme": ({"001-1": "The best answer is B.", "001-2": "D"}, "50.00"),
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_data")
    return {task: write_dataset(task, root / task) for task in TASKS}


def lines(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary_score(stdout: str, task: str) -> str:
    row = next(line for line in stdout.splitlines() if line.startswith(task))
    return row.split()[-1]


@pytest.mark.parametrize("task", TASKS)
def test_score_hand_written_predictions(cli, datasets, tmp_path, task):
    answers, expected = PREDICTIONS[task]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"question_id": q, "answer": a}) + "\n" for q, a in answers.items()))
    result = cli("eval", "--task", task, "--data", datasets[task], "--score", pred, "--json", tmp_path / "out.jsonl")
    assert result.returncode == 0, result.stderr
    assert summary_score(result.stdout, task) == expected
    records = lines(tmp_path / "out.jsonl")
    assert [r["answer"] for r in records] == list(answers.values())
    assert sum(r["score"] for r in records) / len(records) == pytest.approx(float(expected) / 100)


def test_score_reports_groups_and_left_out_items(cli, datasets, tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"question_id": "validation_Art_1", "answer": "(B)"}) + "\n")
    result = cli("eval", "--task", "mmmu", "--data", datasets["mmmu"], "--score", pred)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["mmmu"][-2:] == ["2", "50.00"] and rows["Art"] == ["1", "100.00"] and rows["Math"] == ["1", "0.00"]
    assert "1 open (not multiple-choice) questions left out" in result.stderr
    assert "1 items have no prediction (scored 0)" in result.stderr


def test_bad_inputs_are_clean_errors(cli, datasets, tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"question_id": 101}\n')
    assert_clean_error(cli("eval", "--task", "textvqa", "--data", datasets["textvqa"], "--score", pred),
                       "prediction 1 needs 'question_id' and 'answer'")
    assert_clean_error(cli("eval", "--task", "textvqa", "--data", tmp_path / "nope.json", "--score", pred),
                       "no such file")
    assert_clean_error(cli("eval", "--task", "docvqa", "--data", datasets["textvqa"], "--score", pred),
                       "no 'questionId' field")
    assert_clean_error(cli("eval", "--task", "textvqa", "--data", datasets["textvqa"], "--media-dir", tmp_path,
                           "--score", pred), "--media-dir")
    assert_clean_error(cli("eval", "--plot", tmp_path / "x.png"), "--compare")
    assert_clean_error(cli("eval", "--task", "textvqa", "--data", datasets["textvqa"], "--api-base",
                           "http://127.0.0.1:1/v1", "--model", tmp_path), "drop --model")


@pytest.fixture(scope="module")
def local_runs(tiny_models, datasets, tmp_path_factory, cache_root):
    """Each bundled set answered in-process by the tiny model: {task: (JSONL path, stdout)}."""
    out = tmp_path_factory.mktemp("eval_local")
    runs = {}
    for task in TASKS:
        path = out / f"{task}.jsonl"
        result = subprocess.run([sys.executable, "-m", "paddle_qwenvl.cli", "eval", "--model",
                                 str(tiny_models["qwen2_5_vl"]), "--task", task, "--data", str(datasets[task]),
                                 "--json", str(path), *FAST], capture_output=True, text=True,
                                env=_env(cache_root, compiled_ops=True), timeout=600)
        assert result.returncode == 0, result.stderr
        runs[task] = (path, result.stdout)
    return runs


@pytest.mark.parametrize("task", TASKS)
def test_local_run_writes_consistently_scored_predictions(local_runs, datasets, task):
    path, stdout = local_runs[task]
    items, _ = read_dataset(task, datasets[task])
    records = lines(path)
    assert [r["question_id"] for r in records] == [item.question_id for item in items]
    for item, record in zip(items, records):
        assert record["answer"].strip()                             # the model said something
        score, _ = get_task(task).score(item, record["answer"])
        assert record["score"] == score
    mean = 100 * sum(r["score"] for r in records) / len(records)
    assert summary_score(stdout, task) == f"{mean:.2f}"


def test_a_run_resumes_from_its_jsonl(cli, tiny_models, datasets, local_runs, tmp_path):
    """The first answer kept, the second asked again: the same greedy answer comes back."""
    full = lines(local_runs["textvqa"][0])
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps(dict(full[0], answer="kept answer")) + "\n")
    result = cli("eval", "--model", tiny_models["qwen2_5_vl"], "--task", "textvqa", "--data", datasets["textvqa"],
                 "--json", partial, *FAST, compiled_ops=True)
    assert result.returncode == 0, result.stderr
    resumed = lines(partial)
    assert [r["answer"] for r in resumed] == ["kept answer", full[1]["answer"]]


@pytest.mark.parametrize("task", TASKS)
def test_api_base_gives_the_same_answers(cli, server, local_runs, datasets, tmp_path, task):  # noqa: F811
    path = tmp_path / f"{task}.jsonl"
    result = cli("eval", "--api-base", server + "/v1", "--api-key", KEY, "--task", task, "--data", datasets[task],
                 "--json", path, "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr
    assert [r["answer"] for r in lines(path)] == [r["answer"] for r in lines(local_runs[task][0])]
    assert summary_score(result.stdout, task) == summary_score(local_runs[task][1], task)


def scored_run(cli, datasets, tmp_path, name, answers) -> str:
    pred, out = tmp_path / f"{name}.pred.jsonl", tmp_path / f"{name}.jsonl"
    pred.write_text("".join(json.dumps({"question_id": q, "answer": a}) + "\n" for q, a in answers.items()))
    assert cli("eval", "--task", "mmmu", "--data", datasets["mmmu"], "--score", pred, "--json", out).returncode == 0
    return out


def test_compare_two_runs_with_a_plot(cli, datasets, tmp_path):
    run_a = scored_run(cli, datasets, tmp_path, "a", {"validation_Art_1": "(A)", "validation_Math_2": "(B)"})
    run_b = scored_run(cli, datasets, tmp_path, "b", {"validation_Art_1": "(B)", "validation_Math_2": "B."})
    plot = tmp_path / "compare.png"
    result = cli("eval", "--compare", run_a, run_b, "--plot", plot)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[:6]}
    assert rows["score"] == ["50.00", "100.00"] and rows["Art"] == ["0.00", "100.00"]
    assert rows["items"] == ["scored", "higher", "0", "1"]
    assert "2 items in both runs; same answer on 50.00%; B - A = +50.00 points" in result.stdout
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200
