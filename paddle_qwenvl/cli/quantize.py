"""`paddle-qwenvl quantize SRC OUT`: write a weight-only quantized copy of a checkpoint.

  quantize SRC OUT --quant-type weight_only_int8 [--quantize-vision] [--no-quantize-lm-head]
  quantize SRC OUT --quant-type weight_only_int4 [--quant-group-size 64]
The lm_head is quantized too (int8) unless --no-quantize-lm-head. OUT loads already quantized
(`run -m OUT`, Predictor.from_pretrained(OUT)) without paying the quantization again; it holds
our tensor names (fused qkv / gate_up, qweight + scales) and the tokenizer and processor files of SRC.
"""
import argparse
import time
from pathlib import Path

from .common import UserError, add_quant_args, check_model_dir, quiet, set_up_runtime


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("quantize", help="save a weight-only int8/int4 copy of a checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="checkpoint directory to quantize")
    p.add_argument("out_dir", help="directory to write (created; must not be model_dir)")
    add_quant_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..models import load_model
    from ..quantization import make_quant_config
    from ..tools.weight_writer import save_quantized
    if not args.quant_type:
        raise UserError("give --quant-type weight_only_int8 or weight_only_int4")
    source = check_model_dir(args.model_dir)
    if Path(args.out_dir).expanduser().resolve() == source.resolve():
        raise UserError("out_dir must differ from model_dir: the source checkpoint would be overwritten")
    quant = make_quant_config(args.quant_type, args.quant_group_size, args.quantize_vision, args.quantize_lm_head)
    set_up_runtime()
    start = time.perf_counter()
    model = load_model(source, quant, progress=not quiet())
    out = save_quantized(model, source, Path(args.out_dir).expanduser())
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"wrote {out} ({quant.describe()}, {size / 1e6:.1f} MB of weights) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
