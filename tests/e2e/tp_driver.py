"""Run by test_tensor_parallel.py, alone or under paddle.distributed.launch: load a checkpoint
through Predictor, then on rank 0 write one JSON file with the greedy tokens of a batch of mixed
requests (text, image, video) and the prompt + continuation logits of each.

usage: tp_driver.py MODEL_DIR OUT_JSON [--quant-type TYPE] [--tokens N] [--pid-dir DIR] [--text-only]
                   [--tensor-parallel-size N]
--pid-dir: each rank writes its pid to DIR/rank<R>.pid, rank 0 writes DIR/ready once loaded (for a
test to stop a rank mid-generation);
--text-only: the text request alone (a long one, with --tokens);
--tensor-parallel-size: passed to from_pretrained (without a launch it starts the other ranks).
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np

from paddle_qwenvl import Predictor, SamplingParams
from paddle_qwenvl.cli.common import DEMO_IMAGE, DEMO_VIDEO

REQUESTS = [
    [{"role": "user", "content": "Tell me about tensor parallelism."}],
    [{"role": "user", "content": [{"type": "image", "image": str(DEMO_IMAGE)},
                                  {"type": "text", "text": "What is shown?"}]}],
    [{"role": "user", "content": [{"type": "video", "video": str(DEMO_VIDEO), "fps": 2.0},
                                  {"type": "text", "text": "What moves?"}]}],
]


def main():
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--quant-type", default=None)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--pid-dir", default=None)
    p.add_argument("--text-only", action="store_true")
    p.add_argument("--tensor-parallel-size", type=int, default=None)
    args = p.parse_args()
    if args.pid_dir:           # a follower writes its pid before from_pretrained, which it never leaves
        rank = os.environ.get("PADDLE_TRAINER_ID", "0")
        Path(args.pid_dir, f"rank{rank}.pid").write_text(str(os.getpid()))
    predictor = Predictor.from_pretrained(args.model, quant_type=args.quant_type, progress=False,
                                          tensor_parallel_size=args.tensor_parallel_size,
                                          max_model_len=2048, kv_cache_memory=1 << 23,
                                          max_pixels=64 * 28 * 28, video_max_pixels=16 * 28 * 28)
    requests = REQUESTS[:1] if args.text_only else REQUESTS
    if args.pid_dir:           # rank 0 is loaded, and every rank has joined the group
        Path(args.pid_dir, "ready").write_text("")
    greedy = SamplingParams(temperature=0.0, max_new_tokens=args.tokens, ignore_eos=True)
    outputs = predictor.generate(requests, greedy)
    tokens = [out.token_ids for out in outputs]
    inputs = [predictor.prepare(r) for r in requests]
    logits = predictor.engine.prompt_logits(inputs, tokens)
    Path(args.out).write_text(json.dumps(dict(
        tensor_parallel_size=predictor.tensor_parallel_size, token_ids=tokens,
        logits=[np.asarray(x, dtype=np.float64).tolist() for x in logits])))


if __name__ == "__main__":
    main()
