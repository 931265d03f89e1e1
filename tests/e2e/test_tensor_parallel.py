"""Tensor parallelism end to end: real processes started by paddle.distributed.launch (gloo on
this CPU), against the same commands in one process."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paddle_qwenvl.cli.common import DEMO_IMAGE

from .conftest import ROOT, _env

DRIVER = Path(__file__).with_name("tp_driver.py")


@pytest.fixture(scope="module")
def single_runs():
    """(family, quant_type) -> the one-process driver results, computed once per module."""
    return {}


def launch(tmp_path, cache_root, *command, nproc=2, extra_env=None, wait=True):
    """`python -m paddle.distributed.launch --nproc_per_node N command...` (a .py file or a program)."""
    args = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
            "--log_dir", str(tmp_path / "launch_logs"), *map(str, command)]
    env = dict(_env(cache_root), **(extra_env or {}))
    if not wait:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def drive(tmp_path, cache_root, model, name, nproc=1, quant_type=None):
    out = tmp_path / f"{name}.json"
    args = [DRIVER, model, out] + (["--quant-type", quant_type] if quant_type else [])
    if nproc == 1:
        result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                                env=_env(cache_root), timeout=300)
    else:
        result = launch(tmp_path, cache_root, *args, nproc=nproc)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("family, nproc, quant_type", [("qwen2_vl", 2, None), ("qwen2_5_vl", 2, None),
                                                       ("qwen2_5_vl", 4, None), ("qwen2_5_vl", 2, "weight_only_int8")])
def test_split_ranks_give_the_tokens_and_logits_of_one(family, nproc, quant_type, tiny_models, single_runs,
                                                       tmp_path, cache_root):
    """A batch of a text, an image and a video request: greedy tokens identical, and the logits of
    every prompt and generated position within 1e-4 (float32). The tiny models have 4 query heads
    and 2 KV heads: 2 ranks split the KV heads, 4 ranks hold each KV head twice. int8: each rank
    quantizes its own slices, o_proj and down_proj with their whole rows' scales (the ops'
    reference math here: the compiled decode kernels quantize activations in blocks of 64 inputs,
    wider than the tiny slices)."""
    model = tiny_models[family]
    if (family, quant_type) not in single_runs:
        single_runs[family, quant_type] = drive(tmp_path, cache_root, model, "single", quant_type=quant_type)
    single = single_runs[family, quant_type]
    split = drive(tmp_path, cache_root, model, "split", nproc=nproc, quant_type=quant_type)
    assert (single["tensor_parallel_size"], split["tensor_parallel_size"]) == (1, nproc)
    assert split["token_ids"] == single["token_ids"] and len(single["token_ids"]) == 3
    for a, b in zip(single["logits"], split["logits"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=0, atol=1e-4)


def test_from_pretrained_starts_the_other_ranks_itself(tiny_models, single_runs, tmp_path, cache_root):
    """Predictor.from_pretrained(tensor_parallel_size=2) without a launch: the same results, and the
    follower it started is gone when the script ends (run() returns: no process holds its pipes)."""
    model = tiny_models["qwen2_5_vl"]
    if ("qwen2_5_vl", None) not in single_runs:
        single_runs["qwen2_5_vl", None] = drive(tmp_path, cache_root, model, "single")
    out = tmp_path / "started.json"
    result = subprocess.run([sys.executable, str(DRIVER), str(model), str(out), "--tensor-parallel-size", "2"],
                            capture_output=True, text=True, env=_env(cache_root), timeout=300)
    assert result.returncode == 0, result.stderr
    started = json.loads(out.read_text())
    assert started["tensor_parallel_size"] == 2
    assert started["token_ids"] == single_runs["qwen2_5_vl", None]["token_ids"]


def test_cli_run_under_launch_prints_the_same_tokens_once(cli, tiny_models, tmp_path, cache_root):
    args = ["run", "--model", tiny_models["qwen2_5_vl"], "--image", DEMO_IMAGE, "--prompt", "What is shown?",
            "--json", "--temperature", 0, "--max-new-tokens", 16, "--ignore-eos"]
    single = cli(*args)
    assert single.returncode == 0, single.stderr
    expected = json.loads(single.stdout)
    program = shutil.which("paddle-qwenvl")
    assert program, "the paddle-qwenvl console script is not installed (pip install -e .)"
    split = launch(tmp_path, cache_root, program, *args)
    assert split.returncode == 0, split.stdout + split.stderr
    printed = [json.loads(line) for line in split.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1                                  # rank 0 alone prints
    assert (expected["tensor_parallel_size"], printed[0]["tensor_parallel_size"]) == (1, 2)
    assert printed[0]["token_ids"] == expected["token_ids"] and len(expected["token_ids"]) == 16


def test_paddlemix_tp_command_runs_with_nproc_per_node(deploy, tiny_models, tmp_path, cache_root):
    """The PaddleMIX multi-GPU command with --nproc_per_node 2 in place of --gpus "0,1"."""
    flags = ["--model_name_or_path", tiny_models["qwen2_5_vl"], "--question", "Describe this image.",
             "--image_file", DEMO_IMAGE, "--min_length", 8, "--max_length", 8, "--top_k", 1, "--top_p", 0.001,
             "--temperature", 0.1, "--repetition_penalty", 1.05, "--block_attn", "True", "--append_attn", 1,
             "--inference_model", "True", "--mode", "dynamic", "--dtype", "bfloat16", "--output_via_mq", "False"]
    single = deploy("qwen2_5_vl", *flags)
    assert single.returncode == 0, single.stderr
    split = launch(tmp_path, cache_root, ROOT / "deploy" / "qwen2_5_vl" / "qwen2_5_vl_infer.py", *flags)
    assert split.returncode == 0, split.stdout + split.stderr
    answer = single.stdout.split("Final output_text:\n")[1].splitlines()[0]
    assert split.stdout.count("Final output_text:\n") == 1
    assert split.stdout.split("Final output_text:\n")[1].splitlines()[0] == answer


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_dead_or_hung_rank_ends_the_run_with_an_error(how, tiny_models, tmp_path, cache_root):
    """Rank 1 is killed (SIGKILL) or frozen (SIGSTOP) mid-generation: the launch ends with an
    error instead of waiting. A frozen rank is found by rank 0's collective timeout."""
    pids = tmp_path / "pids"
    pids.mkdir()
    run = launch(tmp_path, cache_root, DRIVER, tiny_models["qwen2_5_vl"], tmp_path / "out.json", "--text-only",
                 "--tokens", 1500, "--pid-dir", pids, extra_env={"PADDLE_QWENVL_TP_TIMEOUT": "5"}, wait=False)
    try:
        while not (pids / "ready").is_file() and run.poll() is None:
            time.sleep(0.2)
        time.sleep(2)                                         # generating (1500 tokens take far longer)
        os.kill(int((pids / "rank1.pid").read_text()), signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        output, _ = run.communicate(timeout=120)
    finally:
        run.kill()
        for pid_file in pids.glob("rank*.pid"):               # whatever the launcher left behind
            _kill_if_alive(int(pid_file.read_text()))
    assert run.returncode != 0, output
    assert not (tmp_path / "out.json").exists()
    if how == "hung":
        logs = (tmp_path / "launch_logs" / "workerlog.0").read_text()
        assert re.search(r"error: tensor parallel rank 0: (all_reduce|broadcast) did not finish within 5 s", logs), logs
    else:   # rank 0's next collective fails, or the launcher sees rank 1 gone first and stops rank 0
        assert "another rank died" in output or "Container rank 1 status failed" in output, output


def _kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
