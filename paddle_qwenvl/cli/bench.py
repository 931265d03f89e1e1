"""`paddle-qwenvl bench`: warm-up + timed runs of one request (or a batch of copies of it).

Reports vision, prefill and decode time and tokens/s (vision and prefill also as the TFLOP/s of their
linear layers), end-to-end seconds and peak resident memory, and the rate this CPU's bf16 / int8
dot-product instructions reach right then (the ceiling of those TFLOP/s without AMX).
With no --image/--video the bundled demo image is used. Prefix caching and the encoder cache are off
unless --prefix-caching is given, so every timed run costs what a new request costs.
"""
import sys

from ..tools.bench import dot_peaks, format_report, linear_flops, run_benchmark, summarize, write_json
from .common import (DEMO_IMAGE, add_media_args, add_model_args, add_sampling_args, describe_quant,
                     predictor_from_args, sampling_from_args, user_message)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmark one request", description=__doc__)
    p.add_argument("--prompt", "-p", default="Describe this image.")
    p.add_argument("--batch-size", type=int, default=1, help="copies of the request run together")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--repeat", type=int, default=3, help="timed runs")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    add_model_args(p)
    add_media_args(p)
    add_sampling_args(p, max_new_tokens=32)
    p.add_argument("--prefix-caching", action="store_true",
                   help="keep prefix caching and the encoder cache on: the timed runs then repeat a known "
                        "request (default: off, each run pays its vision tower and prefill like a new request)")
    p.set_defaults(handler=run, prefix_caching=False, encoder_cache_memory=None)


def run(args) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.encoder_cache_memory is None:                   # goes with --prefix-caching unless given
        from ..engine.encoder_cache import ENCODER_CACHE_MEMORY
        args.encoder_cache_memory = ENCODER_CACHE_MEMORY if args.prefix_caching else 0
    images = args.image or ([] if args.video else [str(DEMO_IMAGE)])
    request = [user_message(args.prompt, images, args.video)]
    predictor = predictor_from_args(args, batch_size=args.batch_size)
    args.ignore_eos = True                  # every run generates exactly --max-new-tokens tokens
    sampling = sampling_from_args(predictor, args)
    log = lambda msg: print(msg, file=sys.stderr)          # noqa: E731
    outputs, runs = run_benchmark(predictor, [request] * args.batch_size, sampling, args.warmup,
                                  args.repeat, log)
    summary = summarize(runs)
    flops = linear_flops(predictor, [request] * args.batch_size)
    peaks = dot_peaks(args.threads)
    print(format_report(summary, describe(args, predictor, images), flops, peaks))
    print(f"answer (request 1): {outputs[0].text!r}")
    if args.json:
        write_json(args.json, dict(summary, linear_flops=flops, dot_peak_tops=peaks, config=config_dict(args, predictor, images),
                                   answer=outputs[0].text))
    return 0


def describe(args, predictor, images) -> str:
    media = ", ".join([f"image {i}" for i in images] + [f"video {v}" for v in args.video]) or "text only"
    from ..ops.threads import num_threads
    threads = args.threads or num_threads()
    dtype = predictor.dtype if predictor.weight_dtype == predictor.dtype else \
        f"{predictor.dtype} ({predictor.weight_dtype} weights)"
    return (f"benchmark: {args.model or 'demo model (random weights)'}; {media}; batch {args.batch_size}; "
            f"{threads} thread(s){_per_rank(predictor)}; "
            f"max_new_tokens {args.max_new_tokens} (EOS ignored); dtype {dtype}; quant {describe_quant(predictor)}; "
            f"llm_mode {predictor.llm_mode}; "
            f"warm-up {args.warmup}, timed {args.repeat}; load {predictor.load_seconds:.1f} s")


def _per_rank(predictor) -> str:
    size = predictor.tensor_parallel_size
    return f" per process x {size} tensor-parallel processes (figures of rank 0)" if size > 1 else ""


def config_dict(args, predictor, images) -> dict:
    return dict(model=args.model, images=images, videos=args.video, batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens, quant=describe_quant(predictor), threads=args.threads,
                llm_mode=predictor.llm_mode,
                warmup=args.warmup, repeat=args.repeat, tensor_parallel_size=predictor.tensor_parallel_size)
