"""The language model of Qwen2-VL-2B on two engines, pair by pair: llama.cpp (GGUF BF16 / Q8_0 / Q4_0,
through llama-cpp-python) and paddle-qwenvl (bfloat16 / weight_only_int8 / weight_only_int4).

    python scripts/bench_vs_llamacpp.py [--prompt-tokens 286] [--new-tokens 32] [--threads 2]
        [--pairs bf16,int8,int4] [--repeat 3] [--num_layers N] [--repack auto|on|off] [--json out.json]

Both engines run the same random weights: the real-size random checkpoint of --preset (built once
and cached, as for bench_vs_hf.py) and its language model written as a GGUF (the gguf package; BF16
as stored, Q8_0 and Q4_0 quantized from it by llama.cpp as llama-quantize does, which keeps the
tied embedding / output matrix of Q4_0 in Q6_K). The GGUFs are cached beside the checkpoint.

A run is one fresh request of --prompt-tokens random token ids (text only), then --new-tokens
greedy tokens: prompt tokens/s = prompt tokens / prompt seconds, decode tokens/s = (new tokens - 1)
/ decode seconds (the first new token comes with the prompt). Each engine runs in its own process
with --threads threads, loaded once per pair; their runs alternate (ours, llama.cpp, ours, ...) so
both see the same stretches of a shared machine. Printed: the best of --repeat runs after one
warm-up each, and ours / llama.cpp (> 1: ours faster).

llama.cpp's extra weight buffers (its repacked and AMX layouts) crashed on some AMX CPUs:
--repack auto (the default) turns them off when /proc/cpuinfo shows AMX, as llama-bench's
`--repack 0` does. llama-cpp-python is an optional extra: pip install 'paddle-qwenvl[llamacpp]'.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paddle_qwenvl.tools.bench import UNCACHED, cached_preset_checkpoint, timed_generate
from paddle_qwenvl.tools.gguf_export import cached_gguf, output_matrix_type, text_config
from paddle_qwenvl.tools.llamacpp import INSTALL_HINT, cpu_amx_flags

# pair -> (GGUF type, our quant_type); ours computes bf16 in the BF16 pair, --dtype in the others
PAIRS = {"bf16": ("BF16", None), "int8": ("Q8_0", "weight_only_int8"), "int4": ("Q4_0", "weight_only_int4")}
SWITCH_PAUSE = 0.3      # seconds between two runs: the other engine's idle threads stop spinning
RESULT = "RESULT "      # a worker's answer line on stdout (anything else there is chatter)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen2-vl-2b", choices=["qwen2-vl-2b", "qwen2.5-vl-3b"])
    p.add_argument("--num_layers", type=int, default=None, help="keep only this many decoder layers (both sides)")
    p.add_argument("--model_dir", default=None, help="an existing checkpoint instead of the preset")
    p.add_argument("--prompt-tokens", dest="prompt_tokens", type=int, default=286)
    p.add_argument("--new-tokens", dest="new_tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pairs", default="bf16,int8,int4", help=f"comma-separated subset of {','.join(PAIRS)}")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per engine and pair (after one warm-up)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                   help="our math in the int8 / int4 pairs (the bf16 pair always computes in bfloat16)")
    p.add_argument("--repack", default="auto", choices=["auto", "on", "off"],
                   help="llama.cpp's extra weight buffers (repacked / AMX layouts); auto: off on AMX CPUs")
    p.add_argument("--json", default=None, metavar="PATH", help="write all runs as JSON")
    p.add_argument("--side", choices=["ours", "llamacpp"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--pair", choices=list(PAIRS), default=None, help=argparse.SUPPRESS)
    p.add_argument("--gguf", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.pairs = [name.strip() for name in args.pairs.split(",") if name.strip()]
    unknown = [name for name in args.pairs if name not in PAIRS]
    if unknown or not args.pairs:
        p.error(f"--pairs {','.join(unknown) or '(empty)'}: choose from {','.join(PAIRS)}")
    if args.prompt_tokens < 1 or args.new_tokens < 2 or args.repeat < 1:
        p.error("need --prompt-tokens >= 1, --new-tokens >= 2 (one decode step) and --repeat >= 1")
    return args


def prompt_ids(model_dir, count: int, seed: int = 0) -> list:
    """`count` random token ids, none of the config's special ids (image pads would ask for pixels)."""
    import numpy as np
    config = text_config(model_dir)
    special = {v for k, v in config.items() if k.endswith("_token_id") and isinstance(v, int)}
    draws = np.random.default_rng(seed).integers(0, config["vocab_size"], 2 * count + len(special)).tolist()
    return [t for t in draws if t not in special][:count]


# ---------------------------------------------------------------- the two workers


def serve(run, info: dict) -> None:
    """Answer each line on stdin with one run (JSON after RESULT); first say ready, with `info`."""
    print(RESULT + json.dumps(info), flush=True)
    for _ in sys.stdin:
        print(RESULT + json.dumps(run()), flush=True)


def serve_ours(args) -> None:
    from paddle_qwenvl.cli.common import load_predictor, set_up_runtime
    from paddle_qwenvl.engine.inputs import PromptInputs
    from paddle_qwenvl.sampling import SamplingParams
    set_up_runtime(args.threads)
    quant_type = PAIRS[args.pair][1]
    dtype = "bfloat16" if quant_type is None else args.dtype
    predictor = load_predictor(args.model_dir, dict(quant_type=quant_type) if quant_type else None, dtype=dtype,
                               max_model_len=args.prompt_tokens + args.new_tokens, engine=UNCACHED)
    request = [PromptInputs(prompt_ids(args.model_dir, args.prompt_tokens))]
    n = args.new_tokens
    sampling = SamplingParams(temperature=0.0, max_new_tokens=n, min_new_tokens=n)

    def run():
        _, stats = timed_generate(predictor.engine, request, sampling)
        return dict(prompt_seconds=stats.prefill, decode_seconds=stats.decode,
                    prompt_tokens=stats.prompt_tokens, new_tokens=stats.completion_tokens)
    name = f"{quant_type} ({predictor.dtype} math)" if quant_type else predictor.dtype
    serve(run, dict(name=name, lm_head=lm_head_kind(predictor.model)))


def lm_head_kind(model) -> str:
    """How the lm_head (or the tied embedding it reads) is held: a quant_type or a float dtype."""
    head = getattr(model, "lm_head", None)
    head = model.model.embed_tokens if head is None else head
    return getattr(head, "algo", None) or str(head.weight.dtype).replace("paddle.", "")


def serve_llamacpp(args) -> None:
    from paddle_qwenvl.tools.llamacpp import LlamaCppModel
    model = LlamaCppModel(args.gguf, args.threads, n_ctx=args.prompt_tokens + args.new_tokens,
                          repack=args.repack == "on")
    ids = prompt_ids(args.model_dir, args.prompt_tokens)

    def run():
        prompt, decode = model.run(ids, args.new_tokens)
        return dict(prompt_seconds=prompt, decode_seconds=decode, prompt_tokens=len(ids), new_tokens=args.new_tokens)
    serve(run, dict(name=PAIRS[args.pair][0], lm_head=output_matrix_type(args.gguf)))


# ---------------------------------------------------------------- the orchestrator


class Worker:
    """One engine in its own process, loaded once; ask() runs it once and returns its figures."""

    def __init__(self, side: str, args, pair: str, model_dir, gguf, log_dir):
        cmd = [sys.executable, __file__, "--side", side, "--pair", pair, "--model_dir", str(model_dir),
               "--gguf", str(gguf), "--threads", str(args.threads), "--dtype", args.dtype,
               "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
               "--repack", args.repack]
        env = dict(os.environ, PADDLE_QWENVL_NUM_THREADS=str(args.threads), PADDLE_QWENVL_QUIET="1")
        self.side, self.log = side, Path(log_dir) / f"{side}-{pair}.log"
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     stderr=self._log_file)
        self.info = self._answer()

    def _answer(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        self.proc.wait()
        raise SystemExit(f"the {self.side} worker stopped (exit {self.proc.returncode}); its log ends:\n"
                         + self.log.read_text()[-3000:])

    def ask(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self._log_file.close()


def bench_pair(pair: str, args, model_dir, log_dir) -> dict:
    gguf = cached_gguf(model_dir, PAIRS[pair][0], args.threads)
    print(f"{pair}: loading both engines ...", file=sys.stderr, flush=True)
    workers = []
    try:
        for side in ("ours", "llamacpp"):
            workers.append(Worker(side, args, pair, model_dir, gguf, log_dir))
        runs = {w.side: [] for w in workers}
        for i in range(1 + args.repeat):                 # round 0: warm-up
            for w in workers:
                time.sleep(SWITCH_PAUSE)
                result = w.ask()
                if i:
                    runs[w.side].append(result)
    finally:
        for w in workers:
            w.close()
    return {w.side: dict(w.info, runs=runs[w.side], **best_rates(runs[w.side])) for w in workers}


def best_rates(runs: list) -> dict:
    return dict(prompt_tokens_per_s=max(r["prompt_tokens"] / r["prompt_seconds"] for r in runs),
                decode_tokens_per_s=max((r["new_tokens"] - 1) / r["decode_seconds"] for r in runs))


def resolved_repack(args) -> str:
    """'on' or 'off' for the workers; auto: off when the CPU has AMX."""
    if args.repack != "auto":
        return args.repack
    return "off" if cpu_amx_flags() else "on"


def report(results: dict, args, layers: int) -> str:
    amx = ", ".join(cpu_amx_flags()) or "none"
    lines = [f"{args.model_dir or args.preset} language model ({layers} decoder layers), random weights; "
             f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, {args.threads} threads; "
             f"best of {args.repeat} alternating runs after 1 warm-up",
             f"llama.cpp extra weight buffers (repack/AMX): {args.repack} (CPU AMX flags: {amx})",
             f"{'llama.cpp / ours':<44}{'prompt tokens/s':>30}{'decode tokens/s':>30}",
             f"{'':<44}" + f"{'llama.cpp':>11}{'ours':>9}{'ratio':>10}" * 2]
    for pair, r in results.items():
        ours, theirs = r["ours"], r["llamacpp"]
        row = f"{theirs['name'] + ' / ' + ours['name']:<44}"
        for key in ("prompt_tokens_per_s", "decode_tokens_per_s"):
            row += f"{theirs[key]:>11.2f}{ours[key]:>9.2f}{ours[key] / theirs[key]:>9.2f}x"
        lines.append(row)
    lines.append("ratio: ours / llama.cpp (> 1: ours faster); output matrix (lm_head / tied embedding), llama.cpp / "
                 "ours: " + "; ".join(f"{r['llamacpp']['lm_head']} / {r['ours']['lm_head']}" for r in results.values()))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side:
        (serve_ours if args.side == "ours" else serve_llamacpp)(args)
        return 0
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise SystemExit(INSTALL_HINT)
    logging.getLogger("llama-cpp-python").setLevel(logging.WARNING)      # quantizing logs every tensor
    args.repack = resolved_repack(args)
    model_dir = Path(args.model_dir) if args.model_dir else cached_preset_checkpoint(args.preset, args.num_layers)
    with tempfile.TemporaryDirectory() as log_dir:
        results = {pair: bench_pair(pair, args, model_dir, log_dir) for pair in args.pairs}
    print(report(results, args, text_config(model_dir)["num_hidden_layers"]))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), results=results,
                                                   load_average=os.getloadavg()), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
