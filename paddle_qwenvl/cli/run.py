"""`paddle-qwenvl run`: one prompt (with images/videos) in, the answer on stdout, stats on stderr."""
import dataclasses
import json
import sys

from .common import (add_media_args, add_model_args, add_sampling_args, predictor_from_args,
                     sampling_from_args, user_message)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="answer one prompt", description=__doc__)
    p.add_argument("--prompt", "-p", required=True, help="the question / instruction")
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: text, token_ids, finish_reason, usage, timings, "
                        "tensor_parallel_size, llm_mode")
    p.add_argument("--logprobs", type=int, default=None, metavar="N",
                   help="with --json: each generated token's log-probability and its N most likely "
                        "alternatives (0-20)")
    add_model_args(p)
    add_media_args(p)
    add_sampling_args(p)
    p.set_defaults(handler=run)


def build_messages(args) -> list:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    return messages + [user_message(args.prompt, args.image, args.video)]


def run(args) -> int:
    messages = build_messages(args)          # checks the files before the model loads
    predictor = predictor_from_args(args)
    sampling = sampling_from_args(predictor, args)
    if args.logprobs is not None:
        sampling = dataclasses.replace(sampling, logprobs=args.logprobs)
    if args.stream and not args.json:
        out = None
        for out in predictor.stream(messages, sampling):
            print(out.delta, end="", flush=True)
        print()
    else:
        out = predictor.generate(messages, sampling)
        print(json.dumps(dict(output_dict(out), tensor_parallel_size=predictor.tensor_parallel_size,
                              llm_mode=predictor.llm_mode), ensure_ascii=False) if args.json else out.text)
    if not args.json:
        print(stats_line(out), file=sys.stderr)
    return 0


def output_dict(out) -> dict:
    t, u = out.timings, out.usage
    return dict(text=out.text, token_ids=list(out.token_ids), finish_reason=out.finish_reason,
                usage=dict(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                           total_tokens=u.total_tokens, cached_tokens=u.cached_tokens),
                timings=dict(vision=t.vision, prefill=t.prefill, decode=t.decode),
                **({} if out.logprobs is None else {"logprobs": [
                    dict(token_id=lp.token_id, logprob=lp.logprob, top=[list(pair) for pair in lp.top])
                    for lp in out.logprobs]}))


def stats_line(out) -> str:
    t, u = out.timings, out.usage
    rate = max(u.completion_tokens - 1, 0) / t.decode if t.decode > 0 else float("nan")
    cached = f" ({u.cached_tokens} cached)" if u.cached_tokens else ""
    return (f"[finish_reason {out.finish_reason}; tokens: prompt {u.prompt_tokens}{cached}, generated "
            f"{u.completion_tokens}; seconds: vision {t.vision:.3f}, prefill {t.prefill:.3f}, "
            f"decode {t.decode:.3f} ({rate:.1f} tokens/s)]")
