"""`paddle-qwenvl eval`: accuracy on a benchmark, from a local copy of its public annotations, scored
with the benchmark's own metric (see docs/evaluation.md).

  paddle-qwenvl eval --model DIR --task textvqa --data TextVQA_0.5.1_val.json --json out.jsonl
  paddle-qwenvl eval --api-base http://127.0.0.1:8000/v1 --task docvqa --data val_v1.0.json
  paddle-qwenvl eval --task chartqa --data test_human.json --score predictions.jsonl
  paddle-qwenvl eval --compare bf16.jsonl int4.jsonl [--plot compare.png]

--json OUT gets one line per item (the answer, its score); a run with the same OUT resumes.
"""
import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import (UserError, add_model_args, add_processor_args, add_sampling_args, predictor_from_args,
                     processor_options, quiet, require_extra, sampling_from_args, warn)


def add_parser(subparsers) -> None:
    from ..evaluation.tasks import TASKS
    p = subparsers.add_parser("eval", help="benchmark accuracy (TextVQA, DocVQA, ChartQA, MMMU, Video-MME)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), help="the benchmark")
    p.add_argument("--data", metavar="PATH", help="its annotation file (JSON, or JSONL for mmmu / videomme)")
    p.add_argument("--media-dir", metavar="DIR", help="folder of its images / videos (default: see docs)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N items")
    p.add_argument("--json", metavar="OUT", help="per-item predictions as JSONL (a rerun resumes from it)")
    p.add_argument("--batch-size", type=int, default=8, help="items answered together (default 8)")
    p.add_argument("--api-base", metavar="URL",
                   help="ask a running OpenAI-compatible server instead of loading a model")
    p.add_argument("--api-key", default=None, help="with --api-base: the server's key")
    p.add_argument("--score", metavar="PRED", help="score a JSONL of {question_id, answer} made elsewhere (no model)")
    p.add_argument("--compare", nargs=2, metavar=("OUT_A", "OUT_B"), help="compare two --json outputs")
    p.add_argument("--plot", metavar="PNG", help="with --compare: draw the scores (needs the bench extra)")
    add_model_args(p)
    add_processor_args(p.add_argument_group("images and videos"))
    add_sampling_args(p, max_new_tokens=128)
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.plot and not args.compare:
        raise UserError("--plot draws a comparison: give --compare OUT_A OUT_B")
    if args.compare:
        return _compare(args)
    from ..evaluation.datasets import read_dataset
    from ..evaluation.runner import format_summary, run_task, summarize
    from ..evaluation.tasks import get_task
    if not args.task or not args.data:
        raise UserError("give --task and --data (the benchmark's annotation file), or --compare OUT_A OUT_B")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: give a positive number")
    task = get_task(args.task)
    items, notes = read_dataset(args.task, args.data, args.media_dir, args.limit)
    for note in notes:
        warn(note)
    if args.score:
        records = _score(args, task, items)
    else:
        answer_batch = _remote_answerer(args) if args.api_base else _local_answerer(args)
        records = run_task(task, items, answer_batch, args.json, args.batch_size, progress=not quiet())
    print(format_summary(summarize(task, records)))
    return 0


def _score(args, task, items):
    import json
    from ..evaluation.runner import read_predictions, score_predictions
    if args.api_base or args.model:
        raise UserError("--score scores predictions made elsewhere: drop --model / --api-base")
    records, notes = score_predictions(task, items, read_predictions(args.score))
    for note in notes:
        warn(note)
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                   encoding="utf-8")
    return records


def _local_answerer(args):
    """The model is loaded at the first batch (a finished run that is resumed loads none)."""
    loaded = []

    def answer_batch(conversations):
        if not loaded:
            predictor = predictor_from_args(args, batch_size=args.batch_size)
            loaded.extend([predictor, sampling_from_args(predictor, _greedy_unless_asked(args))])
        predictor, sampling = loaded
        return [out.text for out in predictor.generate(conversations, sampling)]
    return answer_batch


def _greedy_unless_asked(args):
    """Benchmarks are scored on greedy answers unless --temperature says otherwise."""
    return argparse.Namespace(**dict(vars(args), temperature=0.0 if args.temperature is None else args.temperature))


def _remote_answerer(args):
    """Each batch's items sent as concurrent requests (the server batches them)."""
    from ..serving.client import RemoteChat
    if args.model:
        raise UserError("--api-base asks the server's model: drop --model (or drop --api-base to load it here)")
    if args.video_max_pixels is not None or args.min_new_tokens is not None:
        raise UserError("--video-max-pixels and --min-new-tokens are not request fields: drop them with --api-base")
    try:
        remote = RemoteChat(args.api_base, args.api_key)
    except (ValueError, ConnectionError) as exc:
        raise UserError(str(exc)) from None
    given = dict(max_tokens=args.max_new_tokens, temperature=_greedy_unless_asked(args).temperature,
                 top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                 ignore_eos=args.ignore_eos or None,
                 **{k: v for k, v in processor_options(args).items() if k != "video_max_pixels"})
    body = {k: v for k, v in given.items() if v is not None}

    def answer(messages):
        out = None
        for out in remote.stream(messages, body):
            pass
        return out.text

    def answer_batch(conversations):
        with ThreadPoolExecutor(max_workers=len(conversations)) as pool:
            return list(pool.map(answer, conversations))
    return answer_batch


def _compare(args) -> int:
    from ..evaluation.compare import compare_runs, format_comparison, read_run
    if args.plot:
        require_extra("matplotlib", "bench")
    path_a, path_b = args.compare
    result = compare_runs(read_run(path_a), read_run(path_b))
    print(format_comparison(result, Path(path_a).name, Path(path_b).name))
    if args.plot:
        from ..tools.plots import comparison_plot
        comparison_plot(result, Path(path_a).name, Path(path_b).name, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
