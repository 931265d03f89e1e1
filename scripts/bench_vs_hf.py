"""One request, one random real-size checkpoint, two stacks: paddle-qwenvl vs HF transformers (torch CPU).

    python scripts/bench_vs_hf.py --preset qwen2-vl-2b [--num_layers 8] [--threads 2] [--json out.json]

Both sides run the same image + question in fp32 math (ours holding the checkpoint's bf16 weights as
they are, widened as used; --dtype bfloat16: ours in bf16 math),
greedy, exactly --max_new_tokens tokens (EOS masked until then on both), with the same number of threads, each in its own subprocess (so each
side's peak memory is its own and one side's 9 GB are freed before the other loads). Printed per
stage: seconds on each side and how many times better ours is (> 1: ours is faster / smaller). Then the decode roofline: decoding
one token reads every decoder and lm_head weight once, so tokens/s cannot exceed
DRAM bandwidth / weight bytes per token; the bandwidth is measured in the same run.

The checkpoint (bf16, as published: 4.4 GB for Qwen2-VL-2B, 7.5 GB for Qwen2.5-VL-3B) is built
once with random weights and cached under $PADDLE_QWENVL_CACHE/bench (default ~/.cache/paddle_qwenvl).
HF side: transformers 4.57.3, torch_dtype float32 (--hf_dtype bfloat16: bf16), attn_implementation "sdpa"; its slow
Qwen2VLImageProcessor and fast tokenizer do the preprocessing (AutoProcessor needs torchvision).
"""
import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paddle_qwenvl.tools.bench import (UNCACHED, cached_preset_checkpoint, decode_weight_bytes, peak_resident_bytes,
                                       timed_generate)
from paddle_qwenvl.tools.timing import best_seconds, read_bandwidth_gbps
from paddle_qwenvl.quantization import LM_HEAD_QUANT_TYPE

QUESTION = "Describe this image."
PATCH_MERGE = 4                      # spatial_merge_size ** 2: patches per vision token


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen2-vl-2b", choices=["qwen2-vl-2b", "qwen2.5-vl-3b"])
    p.add_argument("--num_layers", type=int, default=None, help="keep only this many decoder layers")
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image", default=None, help="default: the bundled demo image, resized to --image_size")
    p.add_argument("--image_size", default="448x336", help="WxH the image is resized to (448x336: 768 patches, 192 vision tokens)")
    p.add_argument("--quant_type", default=None, help="our side only: weight_only_int8 / weight_only_int4")
    p.add_argument("--hf_dtype", default="float32", choices=["float32", "bfloat16"], help="HF's torch_dtype")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"],
                   help="our side only: bfloat16 holds the float weights in bf16")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per side (after one warm-up)")
    p.add_argument("--skip_hf", action="store_true", help="our side only")
    p.add_argument("--json", default=None, metavar="PATH", help="write all results as JSON")
    p.add_argument("--plot", default=None, metavar="PNG", help="seconds per stage, ours beside HF (needs matplotlib)")
    p.add_argument("--side", choices=["ours", "hf"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--model_dir", default=None, help="an existing checkpoint instead of the preset")
    return p.parse_args(argv)


# ---------------------------------------------------------------- shared by both sides


def chat_prompt(model_dir) -> str:
    """The rendered chat prompt (one image, then the question), from the checkpoint's template."""
    from paddle_qwenvl.processing import Processor
    messages = [{"role": "user", "content": [{"type": "image", "image": "x"}, {"type": "text", "text": QUESTION}]}]
    return Processor.from_pretrained(model_dir).render(messages)


def side_result(runs: list, **extra) -> dict:
    """The timed run with the shortest end-to-end time, all runs and `extra` (load seconds, ...)."""
    return dict(min(runs, key=lambda r: r["end_to_end"]), runs=runs, peak_memory_bytes=peak_resident_bytes(),
                **extra)


# ---------------------------------------------------------------- our side


def run_ours(args) -> dict:
    from paddle_qwenvl.cli.common import load_predictor, set_up_runtime
    from paddle_qwenvl.sampling import SamplingParams
    set_up_runtime(args.threads)
    start = time.perf_counter()
    predictor = load_predictor(args.model_dir, dict(quant_type=args.quant_type), dtype=args.dtype,
                               max_model_len=2048, engine=UNCACHED)
    load = time.perf_counter() - start
    messages = [{"role": "user", "content": [{"type": "image", "image": args.image},
                                             {"type": "text", "text": QUESTION}]}]
    n = args.max_new_tokens
    sampling = SamplingParams(temperature=0.0, max_new_tokens=n, min_new_tokens=n)
    predictor.generate(messages, SamplingParams(temperature=0.0, max_new_tokens=2))          # warm-up
    runs = [_timed_ours(predictor, messages, sampling) for _ in range(args.repeat)]
    return side_result(runs, load=load, weight_dtype=predictor.weight_dtype, dtype=predictor.dtype)


def _timed_ours(predictor, messages, sampling) -> dict:
    (out,), stats = timed_generate(predictor, [messages], sampling)
    return dict(end_to_end=stats.end_to_end, vision=stats.vision, prefill=stats.prefill, decode=stats.decode,
                preprocess=stats.other, prompt_tokens=stats.prompt_tokens,
                completion_tokens=stats.completion_tokens, token_ids=list(out.token_ids))


# ---------------------------------------------------------------- HF side


def run_hf(args) -> dict:
    import torch
    import transformers  # noqa: F401  (imported before the load timer starts, as paddle is on our side)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, image_processor, tokenizer = _load_hf(args.model_dir, args.hf_dtype)
    load = time.perf_counter() - start
    prompt = chat_prompt(args.model_dir)
    vision = _VisionTimer(model)
    _timed_hf(model, image_processor, tokenizer, prompt, args.image, 2, vision)                # warm-up
    runs = [_timed_hf(model, image_processor, tokenizer, prompt, args.image, args.max_new_tokens, vision)
            for _ in range(args.repeat)]
    return side_result(runs, load=load, dtype=args.hf_dtype)


def _load_hf(model_dir, dtype: str):
    import torch
    import transformers
    config = json.loads((Path(model_dir) / "config.json").read_text())
    cls = getattr(transformers, config["architectures"][0])
    model = cls.from_pretrained(model_dir, torch_dtype=getattr(torch, dtype), attn_implementation="sdpa").eval()
    image_processor = transformers.Qwen2VLImageProcessor.from_pretrained(model_dir)
    return model, image_processor, transformers.AutoTokenizer.from_pretrained(model_dir)


class _VisionTimer:
    """Seconds spent in the vision tower, through forward hooks."""

    def __init__(self, model):
        visual = getattr(model, "visual", None) or model.model.visual
        self.seconds, self._start = 0.0, 0.0
        visual.register_forward_pre_hook(lambda *a: setattr(self, "_start", time.perf_counter()))
        visual.register_forward_hook(lambda *a: setattr(self, "seconds",
                                                        self.seconds + time.perf_counter() - self._start))


def _timed_hf(model, image_processor, tokenizer, prompt, image_path, n, vision) -> dict:
    import torch
    from PIL import Image
    start = time.perf_counter()
    pixels = image_processor(images=[Image.open(image_path).convert("RGB")], return_tensors="pt")
    tokens = int(pixels["image_grid_thw"].prod()) // PATCH_MERGE
    ids = tokenizer(prompt.replace("<|image_pad|>", "<|image_pad|>" * tokens), return_tensors="pt")
    preprocess = time.perf_counter() - start
    first_step = _first_forward_timer(model)
    vision.seconds = 0.0
    with torch.no_grad():
        out = model.generate(**ids, **pixels, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                             temperature=None, top_p=None, top_k=None)
    done = time.perf_counter()
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    tokenizer.decode(new, skip_special_tokens=True)
    end = time.perf_counter()
    first_step.remove()
    gen_start = start + preprocess
    return dict(end_to_end=end - start, preprocess=preprocess + (end - done), vision=vision.seconds,
                prefill=first_step.end - gen_start - vision.seconds, decode=done - first_step.end,
                prompt_tokens=int(ids["input_ids"].shape[1]), completion_tokens=len(new), token_ids=new)


class _first_forward_timer:
    """Records when the model's first forward call (the prefill) of a generate() returns."""

    def __init__(self, model):
        self.end = None
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, *args):
        if self.end is None:
            self.end = time.perf_counter()

    def remove(self):
        self._handle.remove()


def torch_bandwidth(threads: int) -> float:
    """GB/s of torch's sum over 1 GiB of float32 on `threads` threads (best of 3); nan without torch."""
    try:
        import torch
    except ImportError:
        return float("nan")
    torch.set_num_threads(threads)
    x = torch.ones(2 ** 28)
    return x.numel() * 4 / best_seconds(lambda: float(x.sum()), 3, warmup=0) / 1e9


# ---------------------------------------------------------------- the orchestrator


def numpy_bandwidth() -> float:
    """GB/s of numpy's sum over 1 GiB of float32 (best of 3). numpy sums on one thread."""
    import numpy as np
    x = np.ones(2 ** 28, dtype=np.float32)
    return x.nbytes / best_seconds(x.sum, 3, warmup=0) / 1e9


def resized_image(args, out_dir) -> str:
    from PIL import Image
    from paddle_qwenvl.cli.common import DEMO_IMAGE
    w, h = (int(v) for v in args.image_size.lower().split("x"))
    path = Path(out_dir) / f"bench_{w}x{h}.png"
    Image.open(args.image or DEMO_IMAGE).convert("RGB").resize((w, h), Image.BICUBIC).save(path)
    return str(path)


def run_side(side: str, args, model_dir, image) -> dict:
    """One side in a fresh process; its result is the last line of its stdout (JSON)."""
    cmd = [sys.executable, __file__, "--side", side, "--model_dir", str(model_dir), "--image", image,
           "--threads", str(args.threads), "--max_new_tokens", str(args.max_new_tokens),
           "--repeat", str(args.repeat), "--dtype", args.dtype, "--hf_dtype", args.hf_dtype] + (["--quant_type", args.quant_type] if args.quant_type else [])
    env = dict(os.environ, PADDLE_QWENVL_NUM_THREADS=str(args.threads), PADDLE_QWENVL_QUIET="1")
    print(f"running {side} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the {side} side failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


STAGES = ("preprocess", "vision", "prefill", "decode", "end_to_end", "load")


def report(result: dict) -> str:
    ours, hf = result["ours"], result.get("hf")
    lines = [f"{result['preset']} ({result['num_layers']} decoder layers), random weights, ours {ours_weights(result)}"
             f"{', HF ' + result['hf_dtype'] if hf else ''}, "
             f"{result['threads']} threads, image {result['image_size']}, prompt {ours['prompt_tokens']} tokens, "
             f"{ours['completion_tokens']} new tokens; best of {result['repeat']} run(s) after 1 warm-up",
             f"{'':<20}{'ours':>10}{'HF':>10}{'ours adv.':>11}   (x > 1: ours faster / smaller)"]
    if hf is None:
        lines[-1] = f"{'':<20}{'ours':>10}   (HF skipped)"
    rows = [(f"{stage} s", stage, False) for stage in STAGES]
    rows += [("decode tokens/s", "decode_tokens_per_s", True), ("peak memory GiB", "peak_memory_gib", False)]
    for label, key, higher_is_better in rows:
        h = hf[key] if hf else float("nan")
        factor = ours[key] / h if higher_is_better else h / ours[key]
        lines.append(f"{label:<20}{ours[key]:>10.3f}" + (f"{h:>10.3f}{factor:>10.2f}x" if hf else ""))
    r = result["roofline"]
    lines += [f"roofline: {r['weight_gb_per_token']:.2f} GB of weights read per decode token "
              f"(ours: {ours_weights(result)}); bandwidth "
              f"{r['probe_gb_s']:.1f} GB/s ({r['probe_how']}), {r['numpy_gb_s']:.1f} (numpy sum, 1 thread), "
              f"{r['torch_gb_s']:.1f} (torch sum, {result['threads']} threads): the highest -> at most "
              f"{r['limit_tokens_per_s']:.2f} tokens/s",
              f"ours reaches {100 * r['ours_fraction']:.0f}% of that limit"
              + (f", HF {100 * r['hf_fraction']:.0f}%" if hf else "")]
    if hf:
        same = sum(a == b for a, b in zip(ours["token_ids"], hf["token_ids"]))
        lines.append(f"greedy tokens identical: {same}/{len(ours['token_ids'])}")
    return "\n".join(lines)


def add_rates(side: dict) -> None:
    side["decode_tokens_per_s"] = (side["completion_tokens"] - 1) / side["decode"]
    side["peak_memory_gib"] = side["peak_memory_bytes"] / 2 ** 30


def ours_weights(result: dict) -> str:
    """e.g. 'weight_only_int4 decoder, weight_only_int8 lm_head', 'float32 (bfloat16 weights)' or 'bfloat16'."""
    quant, dtype = result["quant_type"], result.get("dtype", "float32")
    weights = result["ours"].get("weight_dtype", dtype)
    if quant:
        return f"{quant} decoder, {LM_HEAD_QUANT_TYPE[quant]} lm_head"
    return dtype if weights == dtype else f"{dtype} ({weights} weights)"


def roofline(model_dir, ours: dict, hf, quant_type, dtype, numpy_gb_s: float, torch_gb_s: float,
             probe: tuple) -> dict:
    """probe: (GB/s, how) of paddle_qwenvl.tools.timing.read_bandwidth_gbps, several streams per
    thread; one stream per thread (numpy's and torch's sums) reads well below what DRAM gives."""
    float_bytes = 2.0 if ours.get("weight_dtype", dtype) == "bfloat16" else 4.0
    quant_bytes = {"weight_only_int8": 1.0, "weight_only_int4": 0.5}
    bytes_per_weight = quant_bytes.get(quant_type, float_bytes)
    head_bytes = quant_bytes[LM_HEAD_QUANT_TYPE[quant_type]] if quant_type else float_bytes    # quantized by default
    bandwidth = max(b for b in (numpy_gb_s, torch_gb_s, probe[0]) if not math.isnan(b))    # nan: no torch
    weight_bytes = decode_weight_bytes(model_dir, bytes_per_weight, head_bytes)
    limit = bandwidth * 1e9 / weight_bytes
    hf_bytes = 2.0 if hf and hf.get("dtype") == "bfloat16" else 4.0
    hf_limit = bandwidth * 1e9 / decode_weight_bytes(model_dir, hf_bytes, hf_bytes)
    return dict(weight_gb_per_token=weight_bytes / 1e9, numpy_gb_s=numpy_gb_s, torch_gb_s=torch_gb_s,
                probe_gb_s=probe[0], probe_how=probe[1],
                bandwidth_gb_s=bandwidth, limit_tokens_per_s=limit, ours_fraction=ours["decode_tokens_per_s"] / limit,
                hf_fraction=(hf["decode_tokens_per_s"] / hf_limit) if hf else float("nan"))


def orchestrate(args) -> dict:
    model_dir = Path(args.model_dir) if args.model_dir else cached_preset_checkpoint(args.preset, args.num_layers)
    with tempfile.TemporaryDirectory() as tmp:
        image = resized_image(args, tmp)
        ours = run_side("ours", args, model_dir, image)
        hf = None if args.skip_hf else run_side("hf", args, model_dir, image)
    for side in filter(None, (ours, hf)):
        add_rates(side)
    layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    return dict(preset=args.model_dir or args.preset, num_layers=layers,
                threads=args.threads, image_size=args.image_size, max_new_tokens=args.max_new_tokens,
                repeat=args.repeat, quant_type=args.quant_type, dtype=ours.get("dtype", args.dtype),
                hf_dtype=args.hf_dtype, model_dir=str(model_dir),
                ours=ours, hf=hf, roofline=roofline(model_dir, ours, hf, args.quant_type, args.dtype, numpy_bandwidth(),
                                  torch_bandwidth(args.threads), read_bandwidth_gbps(threads=args.threads)),
                date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                load_average=os.getloadavg())


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side:
        result = run_ours(args) if args.side == "ours" else run_hf(args)
        print(json.dumps(result))
        return 0
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("--plot needs matplotlib: pip install 'paddle-qwenvl[bench]'")
    result = orchestrate(args)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot_stages(result, args.plot)
    return 0


def plot_stages(result: dict, path: str) -> None:
    """Seconds per stage (load apart: it dwarfs the rest), ours beside HF's when HF ran."""
    from paddle_qwenvl.tools.plots import stage_bars
    sides = [("paddle-qwenvl", result["ours"])] + ([("HF transformers", result["hf"])] if result["hf"] else [])
    stages = {stage: tuple(side[stage] for _, side in sides) for stage in STAGES if stage != "load"}
    stage_bars(stages, tuple(name for name, _ in sides), path,
               f"{Path(result['preset']).name}, {result['num_layers']} layers, image {result['image_size']}, "
               f"{result['ours']['completion_tokens']} new tokens")


if __name__ == "__main__":
    sys.exit(main())
