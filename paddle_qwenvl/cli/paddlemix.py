"""The flag set of PaddleMIX's deploy/qwen2_vl and deploy/qwen2_5_vl scripts, over our Predictor.

Every flag does what it says. Differences from PaddleMIX (--dtype float16 and the obsolete flags print a note):
  --max_length / --min_length   tokens to generate (PaddleNLP's meaning), not prompt + output
  --top_k                       applied (PaddleMIX parses it and ignores it)
  --dtype float16               runs in float32 (--dtype bfloat16 computes in bf16)
  --llm_mode static             exported Paddle inference programs (a checkpoint is exported into a cache
                                once; a directory from `paddle-qwenvl export` runs static by default)
  --block_attn --append_attn --inference_model --output_via_mq --attn_implementation
                                obsolete here: the KV cache is always paged, the model is always
                                the inference model, output goes to stdout
Video defaults follow PaddleMIX: 1 frame per second, at most 360*420 pixels per frame.
"""
import argparse
import sys

from ..tools.bench import UNCACHED, format_report, run_benchmark, summarize, write_json
from .common import (DEMO_IMAGE, DEMO_VIDEO, add_quant_args, check_model_dir, describe_quant, load_predictor,
                     quant_options, resolve_dtype, sampling_from, set_up_runtime, user_message, warn)

FAMILIES = {"qwen2_vl": ("Qwen2-VL / QVQ", "Qwen2VLForConditionalGeneration", "deploy/qwen2_vl/qwen2_vl_infer.py"),
            "qwen2_5_vl": ("Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration",
                           "deploy/qwen2_5_vl/qwen2_5_vl_infer.py")}
OBSOLETE = {
    "block_attn": "the KV cache is always paged (block attention); the flag has no effect",
    "append_attn": "append attention is a PaddleNLP GPU kernel; this build always uses its own paged "
                   "attention; the flag has no effect",
    "inference_model": "the model is always the fused inference model; the flag has no effect",
    "output_via_mq": "output is printed to stdout (PaddleNLP's message queue fed its old server); "
                     "the flag has no effect",
    "attn_implementation": "the vision tower and decoder use this library's attention; the flag has "
                           "no effect",
}


def str2bool(value: str) -> bool:
    lowered = str(value).lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def build_parser(family: str) -> argparse.ArgumentParser:
    name = FAMILIES[family][0]
    p = argparse.ArgumentParser(prog=FAMILIES[family][2], description=f"{name} inference (PaddleMIX deploy flags). "
                                + __doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)       # "--mode" must not be taken as "--model_name_or_path"
    _add_input_args(p)
    _add_generation_args(p)
    _add_runtime_args(p)
    add_quant_args(p, underscores=True)
    return p


def _add_input_args(p):
    p.add_argument("--model_name_or_path", required=True, help="checkpoint directory (downloaded)")
    p.add_argument("--media_type", default="image", choices=["image", "video"])
    p.add_argument("--question", default=None, help="default: 'Describe this image.' / '... video.'")
    p.add_argument("--image_file", default=str(DEMO_IMAGE), help="default: the bundled demo image")
    p.add_argument("--video_file", default=str(DEMO_VIDEO), help="default: the bundled demo video")
    p.add_argument("--batch_size", type=int, default=1, help="copies of the request run together")
    p.add_argument("--min_pixels", type=int, default=None, help="per image (default: preprocessor_config.json)")
    p.add_argument("--max_pixels", type=int, default=None, help="per image (default: preprocessor_config.json)")
    p.add_argument("--video_max_pixels", type=int, default=360 * 420, help="per video frame (PaddleMIX: 360*420)")
    p.add_argument("--fps", type=float, default=1.0, help="video frames sampled per second (PaddleMIX: 1.0)")


def _add_generation_args(p):
    g = p.add_argument_group("generation (unset: the checkpoint's generation_config.json)")
    g.add_argument("--min_length", type=int, default=0, help="min tokens to generate (EOS masked before)")
    g.add_argument("--max_length", type=int, default=512, help="max tokens to generate")
    g.add_argument("--top_k", type=int, default=None, help="0 = off")
    g.add_argument("--top_p", type=float, default=None, help="1 = off")
    g.add_argument("--temperature", type=float, default=None, help="0 = greedy")
    g.add_argument("--repetition_penalty", type=float, default=None, help="1 = off")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--total_max_length", type=int, default=4096, help="prompt + generated tokens per request")


def _add_runtime_args(p):
    g = p.add_argument_group("runtime")
    g.add_argument("--dtype", default="auto",
                   help="auto (the default: bfloat16 math for a bf16 checkpoint on a CPU with native bf16, else "
                        "float32; an exported model: its own dtype), float32 or bfloat16; float16 runs as float32")
    g.add_argument("--llm_mode", "--mode", dest="llm_mode", default=None, choices=["dynamic", "static"],
                   help="PaddleMIX's --mode is the same flag (default: static for an exported model, else dynamic)")
    for flag in OBSOLETE:
        kind = dict(type=str) if flag == "attn_implementation" else dict(type=str2bool, nargs="?", const=True)
        g.add_argument(f"--{flag}", default=None, help="accepted for compatibility; no effect (see above)", **kind)
    g.add_argument("--benchmark", type=str2bool, nargs="?", const=True, default=False,
                   help="warm-up + timed runs; report vision/prefill/decode, end-to-end, peak memory")
    g.add_argument("--warmup", type=int, default=1, help="with --benchmark: untimed runs (PaddleMIX: 3)")
    g.add_argument("--repeat", type=int, default=3, help="with --benchmark: timed runs (PaddleMIX: 10)")
    g.add_argument("--benchmark_json", default=None, metavar="PATH", help="with --benchmark: write JSON")
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")


def explain_flags(args) -> None:
    """One note per flag that behaves differently from PaddleMIX."""
    for flag, reason in OBSOLETE.items():
        if getattr(args, flag) is not None:
            warn(f"--{flag}: {reason}")


def check_family(model_dir, family: str) -> None:
    from ..config import ModelConfig
    arch = ModelConfig.from_dir(model_dir).architecture
    if arch != FAMILIES[family][1]:
        other = next((f for f, v in FAMILIES.items() if v[1] == arch), None)
        hint = f"; {FAMILIES[other][2]} is the matching script" if other else ""
        warn(f"{model_dir} is a {arch}, not a {FAMILIES[family][0]} model; running it anyway{hint}")


def build_request(args) -> list:
    if args.media_type == "image":
        return [user_message(args.question or "Describe this image.", images=[args.image_file])]
    return [user_message(args.question or "Describe this video.", videos=[args.video_file])]


def main(family: str, argv=None) -> int:
    from . import run_handler
    args = build_parser(family).parse_args(argv)
    return run_handler(lambda a: infer(a, family), args)


def infer(args, family: str) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    explain_flags(args)
    dtype = resolve_dtype(args.dtype)
    model_dir = check_model_dir(args.model_name_or_path)
    check_family(model_dir, family)
    request = build_request(args)
    threads = set_up_runtime(args.threads)
    predictor = load_predictor(model_dir, quant_options(args), dtype, args.total_max_length, args.batch_size,
                               engine=UNCACHED if args.benchmark else None, llm_mode=args.llm_mode, min_pixels=args.min_pixels, max_pixels=args.max_pixels, fps=args.fps,
                               video_max_pixels=args.video_max_pixels)
    sampling = sampling_from(predictor, args.max_length, args.min_length, args.temperature, args.top_k,
                             args.top_p, args.repetition_penalty, args.seed)
    requests = [request] * args.batch_size
    if args.benchmark:
        return benchmark(args, predictor, requests, sampling, threads)
    outputs = predictor.generate(requests, sampling)
    for i, out in enumerate(outputs):
        print(f"Final output_text{'' if len(outputs) == 1 else f' [{i}]'}:\n{out.text}")
    print(_stats(outputs[0]), file=sys.stderr)
    return 0


def benchmark(args, predictor, requests, sampling, threads) -> int:
    print(f"Benchmarking {args.model_name_or_path} ...")
    outputs, runs = run_benchmark(predictor, requests, sampling, args.warmup, args.repeat, print)
    summary = summarize(runs)
    print("Final output_text:\n" + outputs[0].text)
    dtype = predictor.dtype if predictor.weight_dtype == predictor.dtype else \
        f"{predictor.dtype} ({predictor.weight_dtype} weights)"
    print(format_report(summary, f"{args.media_type}, batch {args.batch_size}, threads {threads}, dtype {dtype}, "
                                 f"quant {describe_quant(predictor)}, llm_mode {predictor.llm_mode}, "
                                 f"load {predictor.load_seconds:.1f} s"))
    if args.benchmark_json:
        write_json(args.benchmark_json, dict(summary, args=vars(args), threads=threads))
    return 0


def _stats(out) -> str:
    t, u = out.timings, out.usage
    return (f"input_tokens_len: {u.prompt_tokens}, output_tokens_len: {u.completion_tokens}, "
            f"finish_reason: {out.finish_reason}, seconds: vision {t.vision:.3f}, prefill {t.prefill:.3f}, "
            f"decode {t.decode:.3f}")
