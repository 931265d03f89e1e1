"""Qwen2.5-VL inference with the flags of PaddleMIX's deploy script, on paddle-qwenvl.

    python deploy/qwen2_5_vl/qwen2_5_vl_infer.py --model_name_or_path DIR --media_type image \\
        --image_file photo.jpg --question "Describe this image." --max_length 128 --benchmark

Run with --help for every flag and how each differs from PaddleMIX. Needs `pip install .` only:
no sys.path edits, nothing loaded at import time.
"""
import sys

from paddle_qwenvl.cli.paddlemix import main

if __name__ == "__main__":
    sys.exit(main("qwen2_5_vl"))
