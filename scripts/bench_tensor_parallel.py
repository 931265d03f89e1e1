"""Tensor parallelism on one host: each rank's memory after load, load time, decode speed and the
all-reduce time per step, at each tensor-parallel size.

    python scripts/bench_tensor_parallel.py --preset qwen2.5-vl-3b --sizes 1 2 4 --threads 2

Builds (once, cached) a random checkpoint with the real shapes of --preset (--num-layers cuts the
decoder; --model-dir uses an existing checkpoint), then for each size N starts
`python -m paddle.distributed.launch --nproc_per_node N` of this script with --report: N processes
of threads/N threads each (N=1: one process with every thread), so all sizes use the same cores.
Each rank records its resident memory (VmRSS) and load time right after loading; rank 0 then
generates --new-tokens tokens (EOS ignored) for a text prompt, once to warm up and once timed, and
records decode tokens/s and the seconds its all-reduces took per step (waiting for the slowest
rank included). On one host the ranks share the memory bandwidth that decode is bound by: TP
divides each rank's weights, not the bytes the host reads per token.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--preset", default="qwen2.5-vl-3b")
    p.add_argument("--num-layers", type=int, default=None, help="decoder layers (default: the preset's)")
    p.add_argument("--model-dir", default=None, help="an existing checkpoint instead of the preset")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--threads", type=int, default=2, help="threads over all ranks")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--report", default=None, help=argparse.SUPPRESS)     # set for the launched ranks
    return p.parse_args()


def rank_report(args) -> None:
    """One launched rank: load, record, and (rank 0) time a generation."""
    from paddle_qwenvl.cli.common import set_up_runtime
    from paddle_qwenvl.distributed import collective_seconds, init_tensor_parallel
    from paddle_qwenvl.engine.llm_engine import EngineConfig
    from paddle_qwenvl.engine.parallel_steps import run_tensor_parallel
    from paddle_qwenvl.models import load_model
    from paddle_qwenvl.predictor import Predictor
    from paddle_qwenvl.processing import Processor
    from paddle_qwenvl.sampling import SamplingParams
    from paddle_qwenvl.tools.bench import UNCACHED, resident_bytes, timed_generate
    set_up_runtime(args.threads)
    tp = init_tensor_parallel()
    rank = tp.rank if tp else 0
    start = time.perf_counter()
    model = load_model(args.model_dir, progress=False, tp=tp)
    load_seconds = time.perf_counter() - start
    gc.collect()
    record = dict(rank=rank, resident_bytes=resident_bytes(), load_seconds=load_seconds)
    Path(args.report, f"rank{rank}.json").write_text(json.dumps(record))
    config = EngineConfig(max_model_len=512, kv_cache_memory=1 << 28, max_num_seqs=1, **UNCACHED)
    predictor = Predictor(model, Processor.from_pretrained(args.model_dir), config)
    if tp is not None:
        run_tensor_parallel(predictor.engine.runner, tp)          # ranks > 0 follow, then exit here
    request = {"prompt": "Write a long story about a lighthouse keeper. " * 4}
    sampling = SamplingParams(temperature=0, max_new_tokens=args.new_tokens, ignore_eos=True)
    timed_generate(predictor, [request], sampling)                 # warm-up
    before = collective_seconds().get("all_reduce", 0.0)
    _, stats = timed_generate(predictor, [request], sampling)
    steps = stats.completion_tokens                                # one prefill step + the decode steps
    record.update(decode_tokens_per_s=stats.decode_tokens / stats.decode,
                  all_reduce_ms_per_step=1e3 * (collective_seconds().get("all_reduce", 0.0) - before) / steps)
    Path(args.report, "rank0.json").write_text(json.dumps(record))


def run_size(args, model_dir, size: int, out_dir: Path) -> list:
    """The records of every rank of one launch of `size` processes."""
    out_dir.mkdir()
    threads = max(args.threads // size, 1)
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(size),
               "--log_dir", str(out_dir / "logs"), __file__, "--model-dir", str(model_dir),
               "--threads", str(threads), "--new-tokens", str(args.new_tokens), "--report", str(out_dir)]
    env = dict(os.environ, PADDLE_QWENVL_QUIET="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"TP={size} failed (logs in {out_dir / 'logs'}):\n{result.stdout[-2000:]}")
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(size)]


def main():
    args = parse_args()
    if args.report:
        return rank_report(args)
    from paddle_qwenvl.tools.bench import cached_preset_checkpoint
    model_dir = args.model_dir or cached_preset_checkpoint(args.preset, args.num_layers)
    print(f"{model_dir}: {args.threads} threads over all ranks, {args.new_tokens} new tokens")
    print("TP  procs x threads  load s  decode tok/s  all-reduce ms/step  resident GiB per rank")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            ranks = run_size(args, model_dir, size, Path(tmp) / f"tp{size}")
            first = ranks[0]
            memory = " ".join(f"{r['resident_bytes'] / 2**30:.2f}" for r in ranks)
            print(f"{size:<3} {size:>5} x {max(args.threads // size, 1):<7}  {max(r['load_seconds'] for r in ranks):6.1f}"
                  f"  {first['decode_tokens_per_s']:12.1f}  {first['all_reduce_ms_per_step']:18.2f}  {memory}")


if __name__ == "__main__":
    main()
