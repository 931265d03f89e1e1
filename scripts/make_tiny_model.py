"""Write a random-weight model directory (HF format) that paddle-qwenvl and HF transformers load.

    python scripts/make_tiny_model.py /tmp/tiny --family qwen2_vl          # tiny: builds in ~1 s
    python scripts/make_tiny_model.py /tmp/demo --demo                      # the demo's size
    python scripts/make_tiny_model.py /tmp/2b --preset qwen2-vl-2b --num_layers 4   # real-size shapes

Same as `paddle-qwenvl make-tiny`; a thin layer over paddle_qwenvl.tools.tiny.
"""
import argparse
import sys

from paddle_qwenvl.cli import run_handler
from paddle_qwenvl.cli.make_tiny import add_arguments, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_handler(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
