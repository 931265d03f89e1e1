"""A chat's later turns and a long prompt among running requests, with the engine's caches and
chunked prefill off and on, in one run.

    python scripts/bench_chat.py [--preset qwen2-vl-2b] [--image_size 448x448] [--dtype auto]

1. A 3-turn chat about one image: each turn's time to first token (preprocessing, vision tower and
   prefill: end-to-end minus decode) with prefix caching and the encoder cache off and on; the two
   predictors take turns, so both see the same stretches of the machine.
2. A long video prompt arriving while 4 requests decode: the decoding requests' inter-token latency
   (p50 / p99 of the steps they take part in) and the long prompt's time to first token, with the
   whole prompt in one step and in chunks of --chunk tokens (max_num_batched_tokens, one or more
   comma-separated sizes; the vision tower then runs ahead of the prefill, a step's prompt tokens
   and tower work together a chunk's worth).
Real-size random weights (tools.bench.cached_preset_checkpoint), so the answers are meaningless.
"""
import argparse
import time

import numpy as np

from paddle_qwenvl import Predictor, SamplingParams
from paddle_qwenvl.cli.common import DEMO_IMAGE, set_up_runtime
from paddle_qwenvl.weights import resolve_dtype
from paddle_qwenvl.tools.bench import UNCACHED, cached_preset_checkpoint
from paddle_qwenvl.tools.presets import PRESETS

QUESTIONS = ["Describe this image.", "What colours stand out?", "Is there a building? Where?"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen2-vl-2b", choices=sorted(PRESETS))
    p.add_argument("--num_layers", type=int, default=None, help="keep only this many decoder layers")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image_size", default="448x448", help="WxH of the chat's image")
    p.add_argument("--answer_tokens", type=int, default=16, help="tokens of each chat answer")
    p.add_argument("--video_frames", type=int, default=8, help="frames of the long prompt's video")
    p.add_argument("--video_size", default="448x448", help="WxH of its frames")
    p.add_argument("--chunk", default="16", help="max_num_batched_tokens with chunked prefill (comma-separated: each)")
    p.add_argument("--block_size", type=int, default=16, help="KV cache block size (prefix caching reuses whole blocks)")
    p.add_argument("--skip_chat", action="store_true")
    p.add_argument("--skip_chunking", action="store_true")
    return p.parse_args()


def size(text):
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def load(model_dir, args, **engine):
    return Predictor.from_pretrained(model_dir, dtype=args.dtype, progress=False, max_model_len=4096,
                                     block_size=args.block_size, **engine)


def chat_turns(model_dir, args):
    from PIL import Image
    image = np.asarray(Image.open(DEMO_IMAGE).convert("RGB").resize(size(args.image_size)))
    modes = {"off": load(model_dir, args, **UNCACHED), "on": load(model_dir, args)}
    greedy = SamplingParams(temperature=0, max_new_tokens=args.answer_tokens, ignore_eos=True)
    history = {mode: [] for mode in modes}
    print(f"\n3-turn chat about one {args.image_size} image, {args.answer_tokens}-token answers: time to first token")
    print(f"{'turn':>4} {'prompt':>7} {'cached':>7} {'TTFT off s':>11} {'TTFT on s':>10} {'on/off':>7}")
    first = None
    for turn, question in enumerate(QUESTIONS, 1):
        row = {}
        for mode, predictor in modes.items():
            content = ([{"type": "image", "image": image}] if turn == 1 else []) + [{"type": "text", "text": question}]
            messages = history[mode] + [{"role": "user", "content": content}]
            start = time.perf_counter()
            out = predictor.generate(messages, greedy)
            row[mode] = (time.perf_counter() - start - out.timings.decode, out)
            history[mode] = messages + [{"role": "assistant", "content": out.text}]
        first = first or row["on"][0]
        on = row["on"][1]
        print(f"{turn:>4} {on.usage.prompt_tokens:>7} {on.usage.cached_tokens:>7} {row['off'][0]:>11.3f} "
              f"{row['on'][0]:>10.3f} {row['on'][0] / row['off'][0]:>6.2f}x"
              f"   (on: {row['on'][0] / first:.1%} of turn 1's)")
        if row["on"][1].token_ids != row["off"][1].token_ids:
            print("     answers differ between the modes")


def decode_latency(model_dir, args):
    frames = [np.random.default_rng(i).integers(0, 256, size(args.video_size)[::-1] + (3,), dtype=np.uint8)
              for i in range(args.video_frames)]
    w, h = size(args.video_size)
    video = [{"role": "user", "content": [
        {"type": "video", "video": frames, "sample_fps": 2, "resized_height": h, "resized_width": w},
        {"type": "text", "text": "What happens in this video?"}]}]
    print(f"\n4 requests decoding while a {args.video_frames}-frame {args.video_size} video prompt arrives: "
          "their inter-token latency")
    print(f"{'prefill':>14} {'prompt':>7} {'steps':>6} {'TTFT s':>7} {'p50 s':>8} {'p99 s':>8} {'max s':>8} "
          f"{'p99/p50 decode':>15}")
    chunks = [int(c) for c in args.chunk.split(",")]
    for label, chunk in [("whole", None)] + [(f"chunks of {c}", c) for c in chunks]:
        predictor = load(model_dir, args, max_num_batched_tokens=chunk, **UNCACHED)
        engine = predictor.engine
        long = predictor.prepare(video)
        short = [predictor.prepare([{"role": "user", "content": f"Tell me a story about number {i}."}])
                 for i in range(4)]
        ids = [engine.add_request(r, SamplingParams(temperature=0, max_new_tokens=10_000, ignore_eos=True))
               for r in short]
        decoding = set()
        while len(decoding) < len(ids):               # their prefill (chunked too)
            decoding.update(out.request_id for out in engine.step())
        plain = []
        for _ in range(8):                            # decode steps alone
            start = time.perf_counter()
            engine.step()
            plain.append(time.perf_counter() - start)
        engine.add_request(long, SamplingParams(temperature=0, max_new_tokens=1), request_id="long")
        steps, done = [], False
        while not done:                               # until the long prompt's first token
            start = time.perf_counter()
            done = any(out.request_id == "long" for out in engine.step())
            steps.append(time.perf_counter() - start)
        ttft = sum(steps)                             # the long prompt's time to its first token
        for _ in range(4):
            start = time.perf_counter()
            engine.step()
            steps.append(time.perf_counter() - start)
        for rid in ids:
            engine.abort(rid)
        p50 = float(np.median(plain))
        p99 = float(np.percentile(steps, 99))
        print(f"{label:>14} {len(long.input_ids):>7} {len(steps):>6} {ttft:>7.1f} {np.median(steps):>8.3f} {p99:>8.3f} "
              f"{max(steps):>8.3f} {p99 / p50:>14.1f}x   (decode step alone: {p50:.3f} s)")
        del predictor, engine


def main():
    args = parse_args()
    threads = set_up_runtime(args.threads)
    model_dir = cached_preset_checkpoint(args.preset, args.num_layers)
    args.dtype = resolve_dtype(model_dir, args.dtype)          # say which ran
    print(f"{args.preset} ({args.num_layers or 'all'} layers), random weights, dtype {args.dtype}, {threads} threads, "
          f"block size {args.block_size}")
    if not args.skip_chat:
        chat_turns(model_dir, args)
    if not args.skip_chunking:
        decode_latency(model_dir, args)


if __name__ == "__main__":
    main()
