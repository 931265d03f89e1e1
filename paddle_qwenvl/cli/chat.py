"""`paddle-qwenvl chat`: an interactive conversation; the history is kept between turns.

Type a message and press Enter. Commands:
  /image PATH   attach an image to your next message      /video PATH   attach a video
  /reset        forget the conversation                   /exit         leave (or Ctrl-D)
"""
import sys

from .common import (UserError, add_media_args, add_model_args, add_sampling_args, check_file,
                     predictor_from_args, sampling_from_args, user_message)
from .run import stats_line


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("chat", help="chat interactively", description=__doc__,
                              formatter_class=_raw())
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--stats", action="store_true", help="print token counts and timings after each answer")
    p.add_argument("--api-base", default=None, metavar="URL",
                   help="chat with a running server (e.g. http://127.0.0.1:8000/v1) instead of loading a model")
    p.add_argument("--api-key", default=None, help="with --api-base: the server's key")
    add_model_args(p)
    add_media_args(p)       # attached to the first message
    add_sampling_args(p, max_new_tokens=512)
    p.set_defaults(handler=run)


def _raw():
    import argparse
    return argparse.RawDescriptionHelpFormatter


class Conversation:
    """Messages so far, plus the images/videos waiting for the next user message."""

    def __init__(self, system=None, images=(), videos=()):
        self.system = system
        self.reset()
        self.images, self.videos = list(images), list(videos)

    def reset(self):
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.images, self.videos = [], []

    def command(self, line: str) -> bool:
        """Handles /image, /video, /reset; False for anything that is not a command."""
        name, _, arg = line.partition(" ")
        if name in ("/image", "/video"):
            kind = name[1:]
            (self.images if kind == "image" else self.videos).append(check_file(arg.strip(), kind))
            print(f"({kind} attached to your next message)")
        elif name == "/reset":
            self.reset()
            print("(conversation cleared)")
        else:
            return False
        return True

    def user_turn(self, text: str) -> list:
        self.messages.append(user_message(text, self.images, self.videos))
        self.images, self.videos = [], []
        return self.messages


def run(args) -> int:
    conversation = Conversation(args.system, [check_file(i, "image") for i in args.image],
                                [check_file(v, "video") for v in args.video])
    if args.api_base:
        predictor, sampling = _remote(args)
    else:
        predictor = predictor_from_args(args)
        sampling = sampling_from_args(predictor, args)
    interactive = sys.stdin.isatty()
    print(__doc__.split("\n", 2)[2] if interactive else "", end="")
    while True:
        line = _read(interactive)
        if line is None or line.strip() in ("/exit", "/quit"):
            return 0
        if not line.strip():
            continue
        try:
            if conversation.command(line.strip()):
                continue
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            continue
        try:
            _answer(predictor, conversation, line.strip(), sampling, args.stats)
        except (ValueError, ConnectionError) as e:   # bad image/video, prompt too long: keep chatting
            conversation.messages.pop()
            print(f"\nerror: {e}", file=sys.stderr)


def _read(interactive: bool):
    try:
        return input("you> " if interactive else "")
    except EOFError:
        return None


def _answer(predictor, conversation, text, sampling, show_stats):
    print("assistant> ", end="", flush=True)
    out = None
    for out in predictor.stream(conversation.user_turn(text), sampling):
        print(out.delta, end="", flush=True)
    print()
    conversation.messages.append({"role": "assistant", "content": out.text})
    if show_stats:
        print(stats_line(out) if hasattr(out, "timings") else f"[finish_reason {out.finish_reason}; {out.usage}]",
              file=sys.stderr)


def _remote(args):
    """A RemoteChat with the sampling flags given (the server's defaults fill the rest)."""
    from ..serving.client import RemoteChat
    try:
        remote = RemoteChat(args.api_base, args.api_key)
    except (ValueError, ConnectionError) as exc:
        raise UserError(str(exc)) from None
    given = dict(max_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed)
    return remote, {k: v for k, v in given.items() if v is not None}
