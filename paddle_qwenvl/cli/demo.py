"""The embedded demo: `paddle-qwenvl` with no arguments.

Builds a small random-weight checkpoint once (cached under $PADDLE_QWENVL_CACHE, default
~/.cache/paddle_qwenvl), then runs the bundled image and the bundled short video through the whole
pipeline (processor, vision tower, paged-KV decoder, sampler, detokenizer) and prints the answers
and timings. The weights are random, so the answers are meaningless; the timings are real.
"""
import time
from pathlib import Path

from .. import __version__
from ..tools.bench import UNCACHED
from ..tools.demo_model import DEMO_TEXT, FAMILY_NAMES, cache_root, demo_checkpoint
from .common import DEMO_IMAGE, DEMO_VIDEO, check_model_dir, load_predictor, set_up_runtime, user_message

MAX_NEW_TOKENS = 32


def demo_requests():
    """(label, messages) for the bundled image and video."""
    return [(f"image {DEMO_IMAGE.name}", [user_message("Describe this image.", images=[str(DEMO_IMAGE)])]),
            (f"video {DEMO_VIDEO.name}", [user_message("Describe this video.", videos=[str(DEMO_VIDEO)])])]


def run_demo(family: str = "qwen2_5_vl", rebuild: bool = False, threads=None, model_dir=None) -> int:
    """Both bundled requests through the demo checkpoint of `family`, or through `model_dir`."""
    from ..sampling import SamplingParams
    threads = set_up_runtime(threads)
    if model_dir is None:
        model_dir = demo_checkpoint(family, rebuild)
        print(_banner(family, model_dir))
    else:
        model_dir = check_model_dir(model_dir)
        print(f"paddle-qwenvl {__version__} demo on {model_dir}")
    predictor = load_predictor(model_dir, max_model_len=1024, engine=UNCACHED)   # timings of fresh requests
    print(f"loaded in {predictor.load_seconds:.2f} s; {threads} thread(s)\n")
    # seeded sampling: greedy decoding of random weights repeats one token; this shows varied text
    sampling = SamplingParams(temperature=1.0, seed=0, max_new_tokens=MAX_NEW_TOKENS, ignore_eos=True)
    predictor.generate(demo_requests()[0][1], SamplingParams(temperature=0.0, max_new_tokens=2))  # warm-up
    for label, messages in demo_requests():
        start = time.perf_counter()
        out = predictor.generate(messages, sampling)
        print(_describe(label, out, time.perf_counter() - start))
    if str(model_dir).startswith(str(cache_root())):
        print(_next_steps())
    return 0


def _banner(family: str, model_dir: Path) -> str:
    t = DEMO_TEXT
    return (f"paddle-qwenvl {__version__} demo: a {FAMILY_NAMES[family]} model with RANDOM weights "
            f"(hidden {t['hidden_size']}, {t['num_hidden_layers']} layers), cached in {model_dir}\n"
            "The answers below are meaningless because the weights are random; the pipeline and the "
            "timings are real.")


def _describe(label: str, out, seconds: float) -> str:
    t, u = out.timings, out.usage
    decode_rate = max(u.completion_tokens - 1, 0) / t.decode if t.decode > 0 else float("nan")
    return (f"[{label}]\n"
            f"answer: {out.text!r}\n"
            f"tokens: prompt {u.prompt_tokens}, generated {u.completion_tokens} (finish_reason {out.finish_reason})\n"
            f"timings: vision {t.vision:.3f} s, prefill {t.prefill:.3f} s "
            f"({u.prompt_tokens / t.prefill if t.prefill else float('nan'):.0f} tokens/s), "
            f"decode {t.decode:.3f} s ({decode_rate:.1f} tokens/s), end-to-end {seconds:.3f} s\n")


def _next_steps() -> str:
    return ("To use a real model, download a Qwen2-VL or Qwen2.5-VL checkpoint directory, e.g.\n"
            "  huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct --local-dir Qwen2.5-VL-3B-Instruct\n"
            "and point paddle-qwenvl at it:\n"
            "  paddle-qwenvl run --model Qwen2.5-VL-3B-Instruct --image photo.jpg --prompt \"Describe this image.\"\n"
            "  paddle-qwenvl chat --model Qwen2.5-VL-3B-Instruct\n"
            "  paddle-qwenvl demo --model Qwen2.5-VL-3B-Instruct   (this demo's image and video, real weights)")
