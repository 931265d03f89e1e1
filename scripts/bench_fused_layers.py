"""Decode speed with each decoder layer as one op (pqv_decoder_layer) against the layers calling
the single ops, alternated in one process on a random real-size checkpoint.

    python scripts/bench_fused_layers.py --preset qwen2-vl-2b [--dtype bfloat16] [--quant_type weight_only_int8]

One text request, greedy, exactly --max_new_tokens tokens. Each round runs it once per path
(PADDLE_QWENVL_FUSED_LAYERS=1, then 0); printed: decode tokens/s per round and path, their means
and ratio, the weight bytes read per token and what that means in GB/s beside the DRAM read
bandwidth probed before and after (bench_ops.py's probe), and whether both paths generated the
same tokens. The machine's speed drifts between rounds, hence the alternation.
"""
import argparse
import os
import statistics

from bench_ops import dram_limit
from bench_vs_hf import cached_checkpoint, decode_weight_bytes

PROMPT = "Write a long story about a cat who learns to sail."
BYTES = {"float32": 4.0, "bfloat16": 2.0, "weight_only_int8": 1.0, "weight_only_int4": 0.5}


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
    dram = dram_limit(threads, reps=3)
    probes = [dram.probe()]
    model_dir = cached_checkpoint(args.preset, args.num_layers)
    predictor = Predictor.from_pretrained(model_dir, dtype=args.dtype, quant_type=args.quant_type, progress=False)
    messages = [{"role": "user", "content": PROMPT}]
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0, ignore_eos=True)
    predictor.generate(messages, sampling)                                    # warm-up
    speed, tokens = {"1": [], "0": []}, {}
    for r in range(args.rounds):
        for path in ("1", "0"):
            os.environ["PADDLE_QWENVL_FUSED_LAYERS"] = path
            out = predictor.generate(messages, sampling)
            speed[path].append((len(out.token_ids) - 1) / out.timings.decode)  # the first token ends prefill
            tokens[path] = out.token_ids
        print(f"round {r + 1}: one op per layer {speed['1'][-1]:6.2f} tokens/s   single ops {speed['0'][-1]:6.2f}",
              flush=True)
    probes.append(dram.probe())
    weight_bytes = decode_weight_bytes(model_dir, BYTES[args.quant_type or args.dtype], BYTES[args.dtype])
    fused, single = statistics.mean(speed["1"]), statistics.mean(speed["0"])
    print(f"{args.preset} {args.quant_type or args.dtype}: one op per layer {fused:.2f} tokens/s "
          f"({fused * weight_bytes / 1e9:.1f} GB/s of weights), single ops {single:.2f} "
          f"({single * weight_bytes / 1e9:.1f} GB/s); x{fused / single:.2f}; same tokens: {tokens['1'] == tokens['0']}\n"
          f"DRAM read probe before / after: {probes[0]:.1f} / {probes[1]:.1f} GB/s")


if __name__ == "__main__":
    main()
