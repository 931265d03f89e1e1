"""`paddle-qwenvl`: the command line.

  paddle-qwenvl                  the embedded demo (random-weight model, bundled image and video)
  paddle-qwenvl demo             the same, with options (--family, --model, --rebuild)
  paddle-qwenvl run              answer one prompt
  paddle-qwenvl chat             chat interactively
  paddle-qwenvl bench            benchmark one request
  paddle-qwenvl serve            OpenAI-compatible chat server
  paddle-qwenvl webui            chat page in the browser
  paddle-qwenvl make-tiny DIR    write a random-weight model directory
  paddle-qwenvl quantize SRC OUT save a weight-only int8/int4 copy of a checkpoint
  paddle-qwenvl eval             benchmark accuracy (TextVQA, DocVQA, ChartQA, MMMU, Video-MME)
  paddle-qwenvl bench-serve      load-test an OpenAI-compatible server (TTFT, ITL, throughput)
  paddle-qwenvl export SRC OUT   write a checkpoint as Paddle inference programs (static graph)
A new command is one module with add_parser(subparsers) and a handler; see COMMANDS.
"""
import argparse
import sys

from .. import settings
from . import bench, chat, make_tiny, quantize, run, serve
from . import bench_serve, evaluate, export, webui
from .common import UserError

COMMANDS = (run, chat, bench, serve, make_tiny, quantize) + (evaluate, bench_serve, export, webui)


def _add_demo_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the embedded demo (the default command)",
                              description="Runs the bundled image and video through a random-weight "
                                          "model (built once, cached), or through --model.")
    p.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_vl", "qwen2_5_vl"])
    p.add_argument("--model", "-m", default=None, help="a real checkpoint directory instead")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached demo checkpoint")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(handler=lambda a: _demo(a))


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.family, args.rebuild, args.threads, args.model)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(prog="paddle-qwenvl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"paddle-qwenvl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo_parser(subparsers)
    for command in COMMANDS:
        command.add_parser(subparsers)
    for command_parser in subparsers.choices.values():
        command_parser.allow_abbrev = False     # a flag is spelled out: "--mod" is not "--model"
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv or ["demo"])
    return run_handler(args.handler, args)


def run_handler(handler, args) -> int:
    """Runs a command; a bad input is one `error:` line on stderr and exit status 2.
    PADDLE_QWENVL_DEBUG=1 shows the traceback instead."""
    try:
        return handler(args) or 0
    except (UserError, ValueError, OSError, NotImplementedError) as e:
        if settings.debug():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
