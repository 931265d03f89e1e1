"""Decode speed of the three decoder paths, alternated in one process on a random real-size
checkpoint: all layers in one op call (pqv_decoder_stack, the default), one op call per layer
(pqv_decoder_layer, PADDLE_QWENVL_FUSED_LAYERS=layer) and the single ops (=0).

    python scripts/bench_fused_layers.py --preset qwen2-vl-2b [--dtype bfloat16] [--quant_type weight_only_int8]

One text request, greedy, exactly --max_new_tokens tokens. Each round runs it once per path;
printed: decode tokens/s per round and path, their means and ratios to the single ops, the weight
bytes read per token and what that means in GB/s beside the DRAM read bandwidth probed before and
after (tools.timing.ReadProbe, bench_ops.py's probe), and whether all paths generated the same
tokens. The machine's speed drifts between rounds, hence the alternation.
"""
import argparse
import os
import statistics

from paddle_qwenvl.tools.bench import UNCACHED, cached_preset_checkpoint, decode_weight_bytes
from paddle_qwenvl.tools.timing import ReadProbe

PROMPT = "Write a long story about a cat who learns to sail."
PATHS = {"1": "one op for all layers", "layer": "one op per layer", "0": "single ops"}   # FUSED_LAYERS values


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="qwen2-vl-2b", choices=["qwen2-vl-2b", "qwen2.5-vl-3b"])
    p.add_argument("--num_layers", type=int, default=None, help="keep only this many decoder layers")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--quant_type", default=None, choices=["weight_only_int8", "weight_only_int4"])
    p.add_argument("--max_new_tokens", type=int, default=48)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def main():
    args = parse_args()
    from paddle_qwenvl import Predictor, SamplingParams
    from paddle_qwenvl.cli.common import set_up_runtime
    threads = set_up_runtime(args.threads)
    probe = ReadProbe(threads)
    probes = [probe(9)]                                                       # as bench_ops.py --quick
    model_dir = cached_preset_checkpoint(args.preset, args.num_layers)
    predictor = Predictor.from_pretrained(model_dir, dtype=args.dtype, quant_type=args.quant_type, progress=False,
                                          **UNCACHED)
    messages = [{"role": "user", "content": PROMPT}]
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0, ignore_eos=True)
    predictor.generate(messages, sampling)                                    # warm-up
    speed, tokens = {path: [] for path in PATHS}, {}
    for r in range(args.rounds):
        for path in PATHS:
            os.environ["PADDLE_QWENVL_FUSED_LAYERS"] = path
            out = predictor.generate(messages, sampling)
            speed[path].append((len(out.token_ids) - 1) / out.timings.decode)  # the first token ends prefill
            tokens[path] = out.token_ids
        print(f"round {r + 1}: " + "   ".join(f"{PATHS[p]} {speed[p][-1]:6.2f}" for p in PATHS) + " tokens/s", flush=True)
    probes.append(probe(9))
    weight_bytes = decode_weight_bytes(predictor.model)     # as held: a float32 model may hold bf16 weights
    means = {p: statistics.mean(speed[p]) for p in PATHS}
    print(f"{args.preset} {args.quant_type or args.dtype}: " + ", ".join(
        f"{PATHS[p]} {means[p]:.2f} tokens/s ({means[p] * weight_bytes / 1e9:.1f} GB/s of weights, x{means[p] / means['0']:.2f})"
        for p in PATHS) + f"; same tokens: {len({tuple(t) for t in tokens.values()}) == 1}\n"
          f"DRAM read probe before / after: {probes[0]:.1f} / {probes[1]:.1f} GB/s")


if __name__ == "__main__":
    main()
