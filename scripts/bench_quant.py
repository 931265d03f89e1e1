"""fp32 vs weight-only int8 vs int4 on one real-size random checkpoint, in one run.

For each setting, in its own process: resident memory after load, peak memory during the load
(quantization happens tensor by tensor while loading), load time, and decode tokens/s beside
the bandwidth limit (decode weight bytes per token / read bandwidth probed next to that decode).

    python scripts/bench_quant.py --preset qwen2-vl-2b [--num_layers 8] [--settings fp32,int8] [--json out.json]
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from paddle_qwenvl.tools.bench import UNCACHED, cached_preset_checkpoint

# (label, quant_type, variant): "" the defaults (decoder and lm_head, the head in int8), "float_head"
# the lm_head kept float (quantize_lm_head=False), "vision" the vision tower quantized too
SETTINGS = [("fp32", "none", ""), ("int8", "weight_only_int8", ""), ("int4", "weight_only_int4", ""),
            ("int8 float lm_head", "weight_only_int8", "float_head"),
            ("int4 float lm_head", "weight_only_int4", "float_head"),
            ("int8 +vision", "weight_only_int8", "vision"), ("int4 +vision", "weight_only_int4", "vision")]


def worker(model_dir: str, quant_type: str, new_tokens: int, variant: str) -> dict:
    from paddle_qwenvl import Predictor, SamplingParams
    from paddle_qwenvl.tools.bench import PeakAnonymous, decode_weight_bytes, peak_resident_bytes, resident_bytes
    from paddle_qwenvl.tools.timing import read_bandwidth_gbps
    start = time.perf_counter()
    with PeakAnonymous() as anon:
        predictor = Predictor.from_pretrained(model_dir, quant_type=None if quant_type == "none" else quant_type,
                                              quantize_vision=variant == "vision",
                                              quantize_lm_head=variant != "float_head",
                                              kv_cache_memory=256 << 20, max_model_len=1024, progress=False,
                                              **UNCACHED)
    load_s = time.perf_counter() - start
    gc.collect()
    rss, load_peak = resident_bytes(), peak_resident_bytes()
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    request = {"prompt": "Describe the weather today in one long sentence, please."}
    predictor.generate(request, SamplingParams(max_new_tokens=2, temperature=0.0, ignore_eos=True))   # warm-up
    before, how = read_bandwidth_gbps()
    out = predictor.generate(request, params)
    after, _ = read_bandwidth_gbps()
    # the machine's bandwidth shifts over time: the limit is probed next to the decode it judges
    return dict(load_s=load_s, rss_after_load=rss, peak_rss_load=load_peak, peak_anon_load=anon.peak,
                bandwidth_gbps=max(before, after), bandwidth_how=how,
                decode_tokens_per_s=(out.usage.completion_tokens - 1) / out.timings.decode,
                weight_bytes_per_token=decode_weight_bytes(predictor.model))


def run_worker(model_dir: Path, label: str, quant_type: str, variant: str, new_tokens: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(model_dir), "--quant_type", quant_type,
           "--new_tokens", str(new_tokens), "--variant", variant]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode:
        how = "killed (out of memory?)" if out.returncode == -9 else f"exit status {out.returncode}"
        raise RuntimeError(f"{label} worker failed, {how}:\n{out.stderr[-3000:]}")
    row = dict(json.loads(out.stdout.strip().splitlines()[-1]), setting=label)
    print(f"  done: {label}: {json.dumps(row)}", file=sys.stderr, flush=True)   # kept if a later one fails
    return row


def report(rows):
    print(f"limit: decode weight bytes per token / read bandwidth ({rows[0]['bandwidth_how']}), the better of "
          "two probes just before and after each decode")
    print("RSS: after load; peak: VmHWM while loading (counts the mapped shard being read), and the")
    print("     process's own memory at its highest while loading (RssAnon, sampled every 20 ms)")
    print(f"{'setting':<23}{'RSS GB':>8}{'vs first':>9}{'peak GB':>9}{'own peak':>9}{'load s':>8}"
          f"{'GB/token':>10}{'GB/s':>7}{'tok/s':>8}{'limit':>8}{'of limit':>10}")
    base = rows[0]["rss_after_load"]
    for r in rows:
        limit = r["bandwidth_gbps"] * 1e9 / r["weight_bytes_per_token"]
        r.update(bandwidth_limit_tokens_per_s=limit, fraction_of_limit=r["decode_tokens_per_s"] / limit)
        print(f"{r['setting']:<23}{r['rss_after_load'] / 1e9:>8.2f}{r['rss_after_load'] / base:>9.2f}"
              f"{r['peak_rss_load'] / 1e9:>9.2f}{r['peak_anon_load'] / 1e9:>9.2f}{r['load_s']:>8.1f}"
              f"{r['weight_bytes_per_token'] / 1e9:>10.3f}{r['bandwidth_gbps']:>7.1f}{r['decode_tokens_per_s']:>8.2f}{limit:>8.2f}"
              f"{r['fraction_of_limit']:>10.0%}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen2-vl-2b")
    ap.add_argument("--num_layers", type=int, default=None, help="cut the decoder for a quicker run")
    ap.add_argument("--new_tokens", type=int, default=32)
    ap.add_argument("--cache", default=None, help="folder of the cached random checkpoints "
                    "(default: $PADDLE_QWENVL_CACHE/bench, shared with bench_vs_hf.py)")
    ap.add_argument("--settings", default=",".join(label for label, *_ in SETTINGS),
                    help="comma-separated subset of: " + ", ".join(label for label, *_ in SETTINGS))
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quant_type", default="none", help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.quant_type, args.new_tokens, args.variant)))
        return
    model_dir = cached_preset_checkpoint(args.preset, args.num_layers, root=args.cache)
    chosen = [x.strip() for x in args.settings.split(",")]
    unknown = set(chosen) - {label for label, *_ in SETTINGS}
    if unknown:
        raise SystemExit(f"unknown --settings {sorted(unknown)}; choose from {[label for label, *_ in SETTINGS]}")
    rows = [run_worker(model_dir, *setting, args.new_tokens) for setting in SETTINGS if setting[0] in chosen]
    print(f"{args.preset} (random weights, {args.num_layers or 'all'} layers), decode of {args.new_tokens} tokens")
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(preset=args.preset, num_layers=args.num_layers, rows=rows), indent=2))


if __name__ == "__main__":
    main()
