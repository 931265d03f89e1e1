"""`paddle-qwenvl webui`: a chat page in the browser (images and videos, streamed answers, sampling
controls, per-answer stats) over --model (default: the demo model) or, with --api-base, over a
running `paddle-qwenvl serve`. Needs the `webui` extra."""
import sys
from pathlib import Path

from .common import UserError, add_model_args, predictor_from_args


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("webui", help="chat page in the browser", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--api-base", default=None, metavar="URL",
                   help="use a running server (e.g. http://127.0.0.1:8000/v1) instead of loading a model")
    p.add_argument("--api-key", default=None, help="with --api-base: the server's key")
    add_model_args(p)
    p.set_defaults(handler=run, min_pixels=None, max_pixels=None, fps=None, video_max_pixels=None)


def run(args) -> int:
    try:
        import gradio  # noqa: F401  (checked here so the error names the extra)
        from ..webui.page import build_page, launch
    except ImportError as exc:
        raise UserError(f"the web page needs the webui extra ({exc.name} is missing): "
                        "pip install 'paddle-qwenvl[webui]' (or '.[webui]' in a checkout)") from None
    if args.api_base and args.model:
        raise UserError("give either --model (load it here) or --api-base (use a running server), not both")
    backend, title = _remote(args) if args.api_base else _local(args)
    print(f"chat page on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr, flush=True)
    launch(build_page(backend, title), args.host, args.port)
    return 0


def _local(args):
    from ..webui.backends import LocalBackend
    predictor = predictor_from_args(args)
    name = Path(args.model).name if args.model else "demo model (random weights)"
    return LocalBackend(predictor), f"paddle-qwenvl · {name}"


def _remote(args):
    from ..serving.client import RemoteChat
    from ..webui.backends import RemoteBackend
    try:
        remote = RemoteChat(args.api_base, args.api_key)
    except (ValueError, ConnectionError) as exc:
        raise UserError(str(exc)) from None
    return RemoteBackend(remote), f"paddle-qwenvl · {remote.model} at {args.api_base}"
