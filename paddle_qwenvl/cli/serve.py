"""`paddle-qwenvl serve`: an OpenAI-compatible chat server (POST /v1/chat/completions, plain and
streamed; GET /v1/models, /health, /metrics) over one model. Needs the `serve` extra."""
import sys
from pathlib import Path

from .common import UserError, add_model_args, predictor_from_args


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="OpenAI-compatible chat server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/ requests")
    p.add_argument("--served-model-name", default=None, help="the model id clients send (default: the directory name)")
    p.add_argument("--allowed-local-media-path", default=None, metavar="DIR",
                   help="let requests name local image/video files under DIR (default: none)")
    p.add_argument("--allow-private-media", action="store_true",
                   help="fetch http(s) media from private and loopback addresses too (default: public only)")
    p.add_argument("--max-num-seqs", type=int, default=16, help="requests decoded together")
    p.add_argument("--max-waiting-requests", type=int, default=64,
                   help="requests that may wait for a place in the batch; more are answered 503 (Retry-After)")
    add_model_args(p)
    p.set_defaults(handler=run, min_pixels=None, max_pixels=None, fps=None, video_max_pixels=None)


def run(args) -> int:
    try:
        import uvicorn

        from ..serving.app import create_app
        from ..serving.media import MediaPolicy
    except ImportError as exc:
        raise UserError(f"the server needs the serve extra ({exc.name} is missing): "
                        "pip install 'paddle-qwenvl[serve]' (or '.[serve]' in a checkout)") from None
    if args.max_num_seqs < 1 or args.max_waiting_requests < 1:
        raise UserError("--max-num-seqs and --max-waiting-requests take positive numbers")
    root = None
    if args.allowed_local_media_path:
        root = Path(args.allowed_local_media_path).expanduser().resolve()
        if not root.is_dir():
            raise UserError(f"--allowed-local-media-path {args.allowed_local_media_path}: not a directory")
    predictor = predictor_from_args(args, batch_size=args.max_num_seqs)
    name = args.served_model_name or (Path(args.model).name if args.model else "paddle-qwenvl-demo")
    app = create_app(predictor, name, args.api_key, MediaPolicy(root, args.allow_private_media),
                     args.max_waiting_requests)
    print(f"serving {name} on http://{args.host}:{args.port}/v1 (Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
