"""Engine throughput with 1, 4 and 16 concurrent text requests on a mid-size random checkpoint.

    MKL_DEBUG_CPU_TYPE=5 python scripts/bench_engine.py --threads 2

Every request has the same prompt length and generates exactly --new-tokens tokens (EOS
ignored). Throughput = generated tokens / wall time of the whole batch (prefill included).
"""
import argparse
import tempfile

import numpy as np

from paddle_qwenvl.tools.bench import UNCACHED, timed_generate

MID_TEXT = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                num_key_value_heads=2, mrope_section=[8, 12, 12])


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-dir", default=None, help="existing checkpoint; default: build one in a temp dir")
    return p.parse_args()


def build_engine(model_dir, args):
    from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
    from paddle_qwenvl.models import load_model
    from paddle_qwenvl.processing import Tokenizer
    model = load_model(model_dir, progress=False)
    config = EngineConfig(max_model_len=args.prompt_tokens + args.new_tokens, block_size=64,
                          kv_cache_memory=1 << 30, max_num_seqs=max(args.concurrency),
                          max_num_batched_tokens=max(args.concurrency) * (args.prompt_tokens + 1), **UNCACHED)
    return LLMEngine(model, Tokenizer.from_pretrained(str(model_dir)), config)


def run(engine, n, args, seed):
    from paddle_qwenvl.engine.inputs import PromptInputs
    from paddle_qwenvl.sampling import SamplingParams
    rng = np.random.default_rng(seed)
    requests = [PromptInputs(rng.integers(10, 900, args.prompt_tokens).tolist()) for _ in range(n)]
    params = SamplingParams(temperature=0, max_new_tokens=args.new_tokens, ignore_eos=True)
    _, stats = timed_generate(engine, requests, params)
    return stats.completion_tokens, stats.end_to_end, stats.decode


def main():
    args = parse_args()
    import paddle
    paddle.base.core.set_num_threads(args.threads)
    from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or make_tiny_checkpoint(tmp, family="qwen2_vl", text=MID_TEXT)
        engine = build_engine(model_dir, args)
        run(engine, 1, argparse.Namespace(**dict(vars(args), new_tokens=2)), seed=99)   # warm-up
        print(f"hidden 1024, 8 layers, prompt {args.prompt_tokens}, new {args.new_tokens}, "
              f"threads {args.threads}")
        print(f"{'requests':>8} {'tokens':>7} {'wall s':>7} {'tok/s':>7} {'decode tok/s':>12}")
        for n in args.concurrency:
            generated, wall, decode = run(engine, n, args, seed=n)
            decode_rate = n * (args.new_tokens - 1) / decode
            print(f"{n:>8} {generated:>7} {wall:>7.2f} {generated / wall:>7.1f} {decode_rate:>12.1f}")


if __name__ == "__main__":
    main()
