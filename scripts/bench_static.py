"""Static (exported programs, paddle.inference) against dynamic (dygraph) on one request, in one run.

    MKL_DEBUG_CPU_TYPE=5 python scripts/bench_static.py --threads 2            # random Qwen2-VL-2B
    python scripts/bench_static.py --model-dir TINY --repeat 1                  # a quick check

Each measurement runs in its own process (peak memory is per process): the export (timed), then
per mode a cold start (static: the checkpoint exported into an empty cache first; dynamic: the
weights loaded) and a warm start (static: the cached export loaded), each followed by timed runs
of one request (a --image-size square image, --new-tokens tokens, EOS ignored, caches off).
Memory bandwidth here swings from minute to minute, so the speeds are compared in one more process
that holds both modes and alternates their runs: its means and the static/dynamic ratios are the
comparison; the per-process columns give start times and peak memory.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [("export s", lambda r: r.get("export_seconds")), ("start s", lambda r: r["load_seconds"]),
        ("vision s", lambda r: r["seconds"]["vision"]), ("prefill s", lambda r: r["seconds"]["prefill"]),
        ("decode tokens/s", lambda r: r["decode_tokens_per_s"]), ("end-to-end s", lambda r: r["seconds"]["end_to_end"]),
        ("peak memory GiB", lambda r: r["peak_memory_bytes"] / 2 ** 30)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="qwen2-vl-2b")
    p.add_argument("--model-dir", default=None, help="a checkpoint instead of the random --preset one")
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--worker", choices=["dynamic", "static", "alternated"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(args) -> dict:
    """In a fresh process: load in --worker mode (both modes for "alternated"), then timed runs;
    the summary (per mode for "alternated") as JSON on stdout."""
    import numpy as np
    from paddle_qwenvl import Predictor, SamplingParams
    from paddle_qwenvl.ops.threads import set_num_threads
    from paddle_qwenvl.tools.bench import UNCACHED, run_benchmark, summarize, timed_generate
    set_num_threads(args.threads)
    image = np.random.default_rng(0).integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8)
    message = [{"role": "user", "content": [{"type": "image", "image": image},
                                            {"type": "text", "text": "Describe this image."}]}]
    sampling = SamplingParams(temperature=0, max_new_tokens=args.new_tokens, ignore_eos=True)
    modes = ["dynamic", "static"] if args.worker == "alternated" else [args.worker]
    predictors, loads = {}, {}
    for mode in modes:
        start = time.perf_counter()
        predictors[mode] = Predictor.from_pretrained(args.model_dir, llm_mode=mode, max_model_len=2048,
                                                     kv_cache_memory=1 << 28, progress=False, **UNCACHED)
        loads[mode] = time.perf_counter() - start
    if args.worker != "alternated":
        _, runs = run_benchmark(predictors[args.worker], [message], sampling, args.warmup, args.repeat, lambda m: None)
        return dict(summarize(runs), load_seconds=loads[args.worker])
    for predictor in predictors.values():
        run_benchmark(predictor, [message], sampling, args.warmup, 1, lambda m: None)
    runs = {mode: [] for mode in modes}
    for _ in range(args.repeat):              # one run of each mode in turn
        for mode, predictor in predictors.items():
            runs[mode].append(timed_generate(predictor, [message], sampling)[1])
    return {mode: dict(summarize(runs[mode]), load_seconds=loads[mode]) for mode in modes}


def spawn(args, mode: str, cache: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--model-dir", str(args.model_dir), "--threads",
           str(args.threads), "--image-size", str(args.image_size), "--new-tokens", str(args.new_tokens),
           "--warmup", str(args.warmup), "--repeat", str(args.repeat)]
    env = dict(os.environ, PADDLE_QWENVL_CACHE=cache, PADDLE_QWENVL_QUIET="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{mode} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed_export(args, cache: str) -> float:
    out = Path(cache) / "export"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paddle_qwenvl.cli", "export", str(args.model_dir), str(out)],
                   check=True, capture_output=True, env=dict(os.environ, PADDLE_QWENVL_CACHE=cache))
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.model_dir is None:
        from paddle_qwenvl.tools.bench import cached_preset_checkpoint
        args.model_dir = cached_preset_checkpoint(args.preset)
    with tempfile.TemporaryDirectory() as cache:
        columns = {"dynamic": spawn(args, "dynamic", cache)}
        columns["static (cold)"] = spawn(args, "static", cache)       # exports into the empty cache first
        columns["static (warm)"] = spawn(args, "static", cache)       # the cached export
        columns["static (cold)"]["export_seconds"] = timed_export(args, cache)
        alternated = spawn(args, "alternated", cache)
    print(f"{args.model_dir}: {args.image_size}x{args.image_size} image, {args.new_tokens} new tokens, "
          f"{args.threads} threads; means over {args.repeat} run(s)")
    print("each mode in its own process:")
    _table(columns, ROWS)
    print("both modes in one process, runs alternated (the speed comparison):")
    static, dynamic = alternated["static"], alternated["dynamic"]
    alternated["static / dynamic"] = dict(
        seconds={key: static["seconds"][key] / dynamic["seconds"][key] for key in ("vision", "prefill", "end_to_end")},
        decode_tokens_per_s=static["decode_tokens_per_s"] / dynamic["decode_tokens_per_s"])
    _table(alternated, ROWS[2:6])


def _table(columns: dict, rows: list) -> None:
    print(f"{'':18}" + "".join(f"{name:>18}" for name in columns))
    for label, value in rows:
        cells = [value(r) for r in columns.values()]
        print(f"{label:18}" + "".join(f"{'-':>18}" if c is None else f"{c:18.3f}" for c in cells))


if __name__ == "__main__":
    main()
