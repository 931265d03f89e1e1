"""`paddle-qwenvl bench-serve`: load a running OpenAI-compatible server (ours or any other) with
streamed chat requests and report what its users feel: time to first token, inter-token latency,
time per output token and end-to-end latency (mean, p50, p90, p99), request and token throughput,
errors. Each request carries its own random image, so no cache helps. Needs the bench extra.

  paddle-qwenvl bench-serve --api-base http://127.0.0.1:8000/v1 --concurrency 1,4,16 --num-requests 32
  paddle-qwenvl bench-serve --api-base URL --request-rate 2 --num-requests 100 --plot serve.png
"""
import argparse
import json
import sys
from dataclasses import asdict, replace

from .common import UserError, require_extra


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench-serve", help="load-test an OpenAI-compatible server",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api-base", required=True, metavar="URL", help="e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default=None)
    p.add_argument("--model", default=None, help="the model name to send (default: the first the server lists)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--concurrency", default="4", metavar="N[,N...]",
                      help="requests in flight; a list (1,4,16) runs one load per value (default 4)")
    rate.add_argument("--request-rate", type=float, default=None, metavar="R",
                      help="instead: requests per second, Poisson arrivals, no bound on requests in flight")
    p.add_argument("--num-requests", type=int, default=32, metavar="M", help="requests per load (default 32)")
    p.add_argument("--image-size", default="448x448", metavar="WxH", help="random image per request; 'none': text only")
    p.add_argument("--prompt-tokens", type=int, default=64, metavar="P", help="words of text per prompt (~tokens)")
    p.add_argument("--max-tokens", type=int, default=64, metavar="T", help="tokens per answer at most")
    p.add_argument("--ignore-eos", action="store_true", help="ask for exactly T tokens (vLLM's field; ours too)")
    p.add_argument("--logprobs", action="store_true",
                   help="ask for logprobs and count the chunks carrying them too: random-weight checkpoints "
                        "generate tokens that decode to no text")
    p.add_argument("--seed", type=int, default=0, help="images, words and arrival times")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--json", metavar="OUT", help="write the configuration and every run's results")
    p.add_argument("--plot", metavar="PNG", help="latency distributions (and throughput when swept)")
    p.set_defaults(handler=run)


def parse_image_size(text: str):
    if text.lower() == "none":
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--image-size {text!r}: give WxH, e.g. 448x448, or none") from None
    if width < 28 or height < 28:
        raise UserError(f"--image-size {text}: each side needs at least 28 pixels")
    return width, height


def loads(args):
    """One Load per concurrency value (or the one request-rate load), with their labels."""
    from ..tools.serve_bench import Load
    if args.num_requests < 1 or args.prompt_tokens < 0 or args.max_tokens < 1:
        raise UserError("--num-requests and --max-tokens take positive numbers, --prompt-tokens >= 0")
    base = Load(num_requests=args.num_requests, image_size=parse_image_size(args.image_size),
                prompt_tokens=args.prompt_tokens, max_tokens=args.max_tokens, ignore_eos=args.ignore_eos,
                logprobs=args.logprobs, seed=args.seed)
    if args.request_rate is not None:
        if args.request_rate <= 0:
            raise UserError("--request-rate takes a positive number of requests per second")
        return [(f"{args.request_rate:g} req/s", replace(base, request_rate=args.request_rate))]
    try:
        values = [int(v) for v in args.concurrency.split(",")]
    except ValueError:
        values = [0]
    if min(values) < 1:
        raise UserError(f"--concurrency {args.concurrency!r}: give positive numbers, e.g. 4 or 1,4,16")
    # each load its own images and words: a server's prefix and encoder caches never serve one
    # load from another's requests
    return [(f"concurrency {n}", replace(base, concurrency=n, seed=base.seed + 7919 * i)) for i, n in enumerate(values)]


def run(args) -> int:
    require_extra("httpx", "bench")
    if args.plot:
        require_extra("matplotlib", "bench")
    from ..tools.serve_bench import run_load, served_model, summarize
    plan = loads(args)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    model = args.model or served_model(args.api_base, headers)
    runs, summaries = [], []
    for label, load in plan:
        print(f"{label}: {load.num_requests} requests to {model} ...", file=sys.stderr, flush=True)
        results, seconds = run_load(args.api_base, load, model, args.api_key, args.timeout)
        runs.append((label, results))
        summaries.append((label, summarize(results, seconds)))
    print(format_runs(summaries))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(api_base=args.api_base, model=model, runs=[
                dict(label=label, load=asdict(load), summary=summary) for (label, load), (_, summary)
                in zip(plan, summaries)]), f, indent=1)
    if args.plot:
        from ..tools.plots import serve_bench_plot
        first = plan[0][1]
        size = "text only" if first.image_size is None else "x".join(map(str, first.image_size))
        serve_bench_plot(runs, summaries, args.plot, f"{model}: {first.num_requests} requests per run, image "
                         f"{size}, ~{first.prompt_tokens} words in, at most {first.max_tokens} tokens out")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0 if all(s["completed"] for _, s in summaries) else 1


def format_runs(summaries) -> str:
    """One column per run: throughput, then latency rows (ms)."""
    from ..evaluation.runner import format_table
    rows = [("",) + tuple(label for label, _ in summaries)]

    def row(name, value):
        rows.append((name,) + tuple(value(s) for _, s in summaries))
    row("completed / failed", lambda s: f"{s['completed']} / {s['failed']}")
    row("seconds", lambda s: f"{s['seconds']:.2f}")
    row("requests/s", lambda s: f"{s['request_throughput']:.3f}")
    row("output tokens/s", lambda s: f"{s['output_token_throughput']:.2f}")
    row("total tokens/s", lambda s: f"{s['total_token_throughput']:.2f}")
    row("prompt / output tokens (mean)", lambda s: "-" if s["prompt_tokens_mean"] is None
        else f"{s['prompt_tokens_mean']:.0f} / {s['output_tokens_mean']:.1f}")
    for key, name in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("tpot_ms", "TPOT"), ("e2e_ms", "E2E")):
        for stat in ("mean", "p50", "p90", "p99"):
            row(f"{name} {stat} (ms)", lambda s: "-" if s[key] is None else f"{s[key][stat]:.1f}")
    text = format_table(rows)
    errors = [f"{label}: {count} x {message}" for label, s in summaries for message, count in s["errors"].items()]
    return text + ("\nerrors:\n  " + "\n  ".join(errors) if errors else "")
