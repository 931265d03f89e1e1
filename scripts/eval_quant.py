"""Quantized vs float32 on random checkpoints: next-token agreement over a long prompt, logits
cosine, and greedy generations on a few prompts (how many leading tokens match).

    python scripts/eval_quant.py [--model DIR]     # default: two mid-size random checkpoints

Random checkpoints are built two ways: residual-dominated (embeddings N(0,1), other weights
N(0,0.02)), as trained decoders behave, and flat (all weights N(0,0.05)), whose near-uniform logits
make any perturbation flip the argmax: a harsh lower bound.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle

from paddle_qwenvl import SamplingParams
from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.models import load_model
from paddle_qwenvl.quantization import make_quant_config
from paddle_qwenvl.simple_generate import generate_ids, new_kv_caches, prefill_logits
from paddle_qwenvl.tiny import make_tiny_checkpoint

MID_TEXT = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                num_key_value_heads=2, mrope_section=[8, 12, 12], tie_word_embeddings=False)
MID_VISION = dict(hidden_size=128, intermediate_size=256, depth=2, num_heads=2, fullatt_block_indexes=[1])
SETTINGS = [("weight_only_int8", 128), ("weight_only_int4", 128), ("weight_only_int4", 64)]


def prompt_logits(model, ids):
    blocks = -(-len(ids) // 64)
    with paddle.no_grad():
        return prefill_logits(model, PromptInputs(ids), new_kv_caches(model, blocks * 64), 64, blocks)[0].numpy()


def matching_prefix(a, b):
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return n


def evaluate(model_dir, positions=320, prompts=4, new_tokens=32):
    rng = np.random.default_rng(0)
    long_ids = rng.integers(0, 1000, positions).tolist()
    short = [rng.integers(0, 1000, 12).tolist() for _ in range(prompts)]
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    ref = load_model(model_dir, progress=False)
    ref_logits = prompt_logits(ref, long_ids)
    ref_gen = [generate_ids(ref, PromptInputs(p), params) for p in short]
    rows = []
    for quant_type, group in SETTINGS:
        model = load_model(model_dir, make_quant_config(quant_type, group), progress=False)
        got = prompt_logits(model, long_ids)
        cos = (got * ref_logits).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref_logits, axis=-1)
        gen = [generate_ids(model, PromptInputs(p), params) for p in short]
        rows.append((quant_type, group, (got.argmax(-1) == ref_logits.argmax(-1)).mean(), cos.min(), cos.mean(),
                     [matching_prefix(a, b) for a, b in zip(gen, ref_gen)]))
    return rows


def print_rows(title, rows, positions=320, new_tokens=32):
    print(f"\n{title}: top-1 agreement over {positions} positions, logits cosine, "
          f"greedy tokens matching fp32 before the first difference (of {new_tokens}) per prompt")
    print(f"{'quant':<18}{'group':>6}{'top-1':>8}{'cos min':>9}{'cos mean':>10}  greedy prefix")
    for quant_type, group, top1, cmin, cmean, prefixes in rows:
        print(f"{quant_type:<18}{group if quant_type.endswith('4') else '-':>6}{top1:>8.1%}{cmin:>9.5f}"
              f"{cmean:>10.5f}  {prefixes}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a model directory instead of the random mid-size ones")
    args = ap.parse_args()
    if args.model:
        print_rows(args.model, evaluate(args.model))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for title, std, embed_std in [("residual-dominated random (embed 1.0, weights 0.02)", 0.02, 1.0),
                                      ("flat random (all weights 0.05)", 0.05, None)]:
            path = make_tiny_checkpoint(Path(tmp) / title[:4], "qwen2_5_vl", text=MID_TEXT, vision=MID_VISION,
                                        std=std, embed_std=embed_std)
            print_rows(title, evaluate(path))


if __name__ == "__main__":
    sys.exit(main())
