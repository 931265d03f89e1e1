"""`paddle-qwenvl make-tiny`: write a random-weight checkpoint directory (HF format).

  make-tiny DIR [--family qwen2_5_vl]         tiny test model (hidden 64, 2 layers; builds in ~1 s)
  make-tiny DIR --demo                        the demo's small model (hidden 256, 4 layers)
  make-tiny DIR --preset qwen2-vl-2b [--num-layers 4]   real-size shapes, random weights (bfloat16)
The weights are random: good for tests, demos and speed/memory measurements, not for answers.
"""
import argparse
import time

from ..tools.presets import PRESETS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("make-tiny", help="write a random-weight model directory",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(handler=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", help="directory to write (created)")
    p.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_vl", "qwen2_5_vl"])
    p.add_argument("--demo", action="store_true", help="the demo model's size instead of the tiny one")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="a published model's shapes")
    p.add_argument("--num-layers", "--num_layers", type=int, default=None,
                   help="with --preset: keep only this many decoder layers")
    p.add_argument("--vision-depth", "--vision_depth", type=int, default=None,
                   help="with --preset: keep only this many vision blocks")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from ..tools.tiny import make_preset_checkpoint, make_tiny_checkpoint
    from .common import UserError, quiet
    if (args.num_layers or args.vision_depth) and not args.preset:
        raise UserError("--num-layers / --vision-depth only apply with --preset NAME")
    start = time.perf_counter()
    if args.preset:
        out = make_preset_checkpoint(args.out_dir, args.preset, num_layers=args.num_layers,
                                     vision_depth=args.vision_depth, seed=args.seed, progress=not quiet())
    elif args.demo:
        from ..tools.demo_model import DEMO_TEXT, DEMO_VISION
        out = make_tiny_checkpoint(args.out_dir, args.family, args.seed, DEMO_TEXT, DEMO_VISION[args.family])
    else:
        out = make_tiny_checkpoint(args.out_dir, args.family, args.seed)
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s (random weights)")
    return 0
