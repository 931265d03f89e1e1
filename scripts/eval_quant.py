"""Quantized and bfloat16 models vs float32 on random checkpoints: next-token agreement over 8
long prompts, logits cosine and largest logit error, and greedy generations on a few prompts (how
many leading tokens match).

    python scripts/eval_quant.py [--model DIR]     # default: the mid-size random checkpoints, then
                                                   # bfloat16 on the parity tests' tiny checkpoints

Random checkpoints are built two ways: residual-dominated (embeddings N(0,1), other weights
N(0,0.02)), as trained decoders behave, and flat (all weights N(0,0.05)), whose near-uniform logits
make any perturbation flip the argmax: a harsh lower bound. Each int8/int4 setting runs with its
default lm_head (int8) and with the head kept float (quantize_lm_head=False); int4 also with an
int4 head. On the residual-dominated checkpoint, other lm_head schemes are tried in numpy (weights
per group, activations per block or float).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle

from paddle_qwenvl import SamplingParams
from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
from paddle_qwenvl.models import load_model
from paddle_qwenvl.quantization import make_quant_config
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint

MID_TEXT = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                num_key_value_heads=2, mrope_section=[8, 12, 12], tie_word_embeddings=False)
MID_VISION = dict(hidden_size=128, intermediate_size=256, depth=2, num_heads=2, fullatt_block_indexes=[1])
# (quantization, dtype), each against the float32 model of the same checkpoint
SETTINGS = [(make_quant_config("weight_only_int8"), "float32"),
            (make_quant_config("weight_only_int8", quantize_lm_head=False), "float32"),
            (make_quant_config("weight_only_int4"), "float32"),
            (make_quant_config("weight_only_int4", lm_head_quant_type="weight_only_int4"), "float32"),
            (make_quant_config("weight_only_int4", quantize_lm_head=False), "float32"),
            (make_quant_config("weight_only_int4", 64), "float32"),
            (make_quant_config("weight_only_int8", quantize_vision=True), "float32"),
            (None, "bfloat16")]
PARITY_SETTINGS = [(None, "bfloat16")]


def engine_for(model) -> LLMEngine:
    """The engine generate() runs, without a tokenizer (token ids out)."""
    return LLMEngine(model, None, EngineConfig(max_model_len=1024, block_size=64, max_num_seqs=1))


def prompt_logits(model, ids):
    return engine_for(model).prompt_logits([PromptInputs(ids)])[0]


def generate_ids(model, prompts, params):
    engine = engine_for(model)
    return [engine.generate([PromptInputs(p)], params)[0].token_ids for p in prompts]


def vision_features(model, grid=(1, 16, 16)):
    """The tower's output for one random image of `grid` patches (t, h, w), numpy (tokens, hidden)."""
    dim = model.config.vision.patch_dim
    pixels = np.random.default_rng(1).standard_normal((int(np.prod(grid)), dim)).astype("float32")
    with paddle.no_grad():
        return model.get_image_features(paddle.to_tensor(pixels), [grid]).numpy()


def cosine(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def matching_prefix(a, b):
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return n


def long_prompts(rng, positions=320, count=8):
    """`count` random prompts of `positions` tokens (8 x 320: one flip moves top-1 by 0.04%, where
    one prompt's 320 positions moved it by 0.3%)."""
    return [rng.integers(0, 1000, positions).tolist() for _ in range(count)]


def evaluate(model_dir, settings=SETTINGS, prompts=4, new_tokens=32):
    """Rows per setting against float32: top-1 agreement and logits cosine over long_prompts(),
    greedy prefixes on `prompts` short ones."""
    rng = np.random.default_rng(0)
    long_ids = long_prompts(rng)
    short = [rng.integers(0, 1000, 12).tolist() for _ in range(prompts)]
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    ref = load_model(model_dir, progress=False)
    ref_logits = np.concatenate([prompt_logits(ref, ids) for ids in long_ids])
    ref_gen = generate_ids(ref, short, params)
    ref_vision = vision_features(ref)
    rows = []
    for quant, dtype in settings:
        model = load_model(model_dir, quant, progress=False, dtype=dtype)
        got = np.concatenate([prompt_logits(model, ids) for ids in long_ids])
        cos = cosine(got, ref_logits)
        gen = generate_ids(model, short, params)
        own_vision = quant is None or quant.quantize_vision       # else the float32 tower itself
        vision_cos = cosine(vision_features(model), ref_vision).min() if own_vision else None
        rows.append((setting_name(quant, dtype), (got.argmax(-1) == ref_logits.argmax(-1)).mean(), cos.min(),
                     cos.mean(), np.abs(got - ref_logits).max(), vision_cos,
                     [matching_prefix(a, b) for a, b in zip(gen, ref_gen)]))
    return rows, np.abs(ref_logits).max(), len(ref_logits)


def setting_name(quant, dtype) -> str:
    return quant.describe() if quant else f"{dtype} math"


def print_rows(title, result, new_tokens=32):
    rows, logit_max, positions = result
    print(f"\n{title}: top-1 agreement over {positions} positions, logits cosine, largest logit error "
          f"(float32 logits reach {logit_max:.2f}), vision features cosine (min over tokens), greedy tokens "
          f"matching fp32 before the first difference (of {new_tokens})")
    print(f"{'setting':<42}{'top-1':>7}{'cos min':>9}{'cos mean':>10}{'max err':>9}{'vision':>9}  greedy prefix")
    for name, top1, cmin, cmean, err, vision_cos, prefixes in rows:
        vision = "-" if vision_cos is None else f"{vision_cos:.5f}"
        print(f"{name:<42}{top1:>7.1%}{cmin:>9.5f}{cmean:>10.5f}{err:>9.4f}{vision:>9}  {prefixes}")


def fake_quant(a, group):
    """a (rows, K) through symmetric int8 per `group` values along K (None: per row), dequantized."""
    rows, k = a.shape
    blocks = a.reshape(rows, -1, group or k)
    scale = np.maximum(np.abs(blocks).max(-1, keepdims=True) / 127, 1e-12)
    return (np.round(blocks / scale) * scale).reshape(rows, k)


def head_schemes(model_dir):
    """Top-1 agreement with float32 over long_prompts() of the int8 decoder under lm_heads quantized
    other ways, in numpy: the head's weights int8 per row or per group, its input int8 per block or
    float. The decoder's hidden states are ours (float head); the first row is the kernels' scheme."""
    long_ids = long_prompts(np.random.default_rng(0))
    ref = np.concatenate([prompt_logits(load_model(model_dir, progress=False), ids) for ids in long_ids])
    model = load_model(model_dir, make_quant_config("weight_only_int8", quantize_lm_head=False), progress=False)
    hidden, head = [], model.compute_logits
    model.compute_logits = lambda h: hidden.append(h.numpy()) or head(h)
    float_head = np.concatenate([prompt_logits(model, ids) for ids in long_ids])
    h, w = np.concatenate(hidden), model.lm_head.weight.astype("float32").numpy()
    print(f"\nint8 decoder, lm_head schemes (numpy): top-1 over {len(ref)} positions; float head "
          f"{(float_head.argmax(-1) == ref.argmax(-1)).mean():.2%}")
    print(f"{'head weights':<16}{'x int8 per 64':>15}{'x int8 per 32':>15}{'x float':>10}")
    for group in (None, 128, 64, 32):
        cells = [(fake_quant(h, block) if block else h) @ fake_quant(w, group).T for block in (64, 32, None)]
        agree = [f"{(y.argmax(-1) == ref.argmax(-1)).mean():.2%}" for y in cells]
        print(f"{'int8 per row' if group is None else f'int8 per {group}':<16}{agree[0]:>15}{agree[1]:>15}{agree[2]:>10}")


def evaluate_mid_size(tmp):
    for title, std, embed_std, tied in [
            ("residual-dominated random (embed 1.0, weights 0.02)", 0.02, 1.0, False),
            ("the same with tied embeddings (the 2B/3B layout)", 0.02, 1.0, True),
            ("flat random (all weights 0.05)", 0.05, None, False)]:
        path = make_tiny_checkpoint(Path(tmp) / title[:8], "qwen2_5_vl", text=dict(MID_TEXT, tie_word_embeddings=tied),
                                    vision=MID_VISION, std=std, embed_std=embed_std)
        print_rows(title, evaluate(path))
        if title.startswith("residual"):
            head_schemes(path)


def evaluate_parity_checkpoints(tmp):
    """bfloat16 math on the parity tests' tiny checkpoints: tests/conftest.py's (float32 tensors,
    seed 0) and tests/parity's bf16-stored ones (seed 1)."""
    for family in ("qwen2_vl", "qwen2_5_vl"):
        for seed, dtype in ((0, "float32"), (1, "bfloat16")):
            path = make_tiny_checkpoint(Path(tmp) / f"parity-{family}-{dtype}", family, seed=seed, dtype=dtype)
            print_rows(f"parity checkpoint {family}, {dtype} tensors (seed {seed})",
                       evaluate(path, PARITY_SETTINGS))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a model directory instead of the random mid-size ones")
    args = ap.parse_args()
    if args.model:
        print_rows(args.model, evaluate(args.model))
        return
    with tempfile.TemporaryDirectory() as tmp:
        evaluate_mid_size(tmp)
        evaluate_parity_checkpoints(tmp)


if __name__ == "__main__":
    sys.exit(main())
