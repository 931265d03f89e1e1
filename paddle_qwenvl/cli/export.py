"""`paddle-qwenvl export MODEL_DIR OUT_DIR`: write a checkpoint as Paddle inference programs.

  export MODEL_DIR OUT_DIR [--dtype auto|float32|bfloat16] [--quant-type weight_only_int8|weight_only_int4] ...
OUT_DIR (new or empty) holds the vision tower and the decoder step programs (*.json + *.pdiparams,
loadable by paddle.inference.Config), the tokenizer, chat template, preprocessor and generation
configs, and manifest.json. `paddle-qwenvl run --model OUT_DIR` runs it (--llm-mode static);
Python: Predictor.from_pretrained(OUT_DIR). The export runs on this machine's build of the
compiled ops: another paddle, paddle-qwenvl or ops build refuses it (export again).
"""
import argparse
from pathlib import Path

from ..config import FLOAT_DTYPES
from .common import add_quant_args, check_model_dir, quiet, resolve_dtype, set_up_runtime


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as Paddle inference programs (static graph)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="checkpoint directory (config.json, *.safetensors, tokenizer)")
    p.add_argument("out_dir", help="directory to write (new or empty)")
    p.add_argument("--dtype", default="auto", choices=FLOAT_DTYPES,
                   help="the programs' math: auto (default: bfloat16 for a bf16 checkpoint on a CPU with "
                        "native bf16, else float32), float32 or bfloat16")
    p.add_argument("--block-size", type=int, default=None,
                   help="tokens per KV cache block, fixed in the decoder step (default: the engine's)")
    add_quant_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..engine.block_manager import BLOCK_SIZE
    from ..quantization import make_quant_config
    from ..static.export import export_model
    source = check_model_dir(args.model_dir)
    quant = make_quant_config(args.quant_type, args.quant_group_size, args.quantize_vision, args.quantize_lm_head)
    set_up_runtime()
    out = export_model(source, Path(args.out_dir).expanduser(), resolve_dtype(args.dtype), quant,
                       args.block_size or BLOCK_SIZE, progress=not quiet())
    print(f"wrote {out}")
    return 0
