"""Export a Qwen2-VL / Qwen2.5-VL checkpoint as Paddle inference programs: the vision tower and
the decoder step (programs.py), their parameters, every non-weight file of the checkpoint
(config, tokenizer, chat template, preprocessor and generation configs) and manifest.json.

The directory is written under OUT.partial and renamed to OUT when complete, so a crash leaves
no OUT that looks finished.
"""
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import paddle

from ..engine.block_manager import BLOCK_SIZE
from ..engine.model_runner import kv_cache_dtype
from ..models import load_model
from ..quantization import QuantConfig
from ..weights import resolve_dtype
from .manifest import ExportError, describe_inputs, file_sizes, require_compiled_ops, versions, write_manifest
from .programs import (DECODER_STEP, VISION_TOWER, DecoderStep, VisionTower, decoder_step_spec, trace,
                       vision_spec)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pdparams", ".index.json")
PROGRAM_FILES = (".json", ".pdiparams")


def export_model(model_dir, out_dir, dtype: str = "auto", quant: Optional[QuantConfig] = None,
                 block_size: int = BLOCK_SIZE, progress: bool = True) -> Path:
    """Write the export of `model_dir` to `out_dir` (absent or empty); returns out_dir. dtype "auto"
    resolves from the checkpoint (weights.resolve_dtype) and the manifest records what it became."""
    require_compiled_ops()
    dtype = resolve_dtype(model_dir, dtype)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} is not empty: export into a new directory, or remove it first")
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    say, start = _reporter(progress), time.perf_counter()
    try:
        _write_export(Path(model_dir), partial, dtype, quant, block_size, say)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out_dir.exists():
        out_dir.rmdir()
    partial.rename(out_dir)
    say(f"exported to {out_dir} in {time.perf_counter() - start:.1f} s")
    return out_dir


def _write_export(model_dir: Path, out: Path, dtype: str, quant, block_size: int, say) -> None:
    say(f"loading {model_dir}")
    model = load_model(model_dir, quant=quant, progress=say.progress, dtype=dtype)
    kv_dtype = kv_cache_dtype(model.compute_dtype)
    programs = {VISION_TOWER: (VisionTower(model), vision_spec(model.visual, model.config)),
                DECODER_STEP: (DecoderStep(model, block_size), decoder_step_spec(model.config, kv_dtype))}
    for name, (layer, spec) in programs.items():
        say(f"tracing the {name.replace('_', ' ')}")
        paddle.jit.save(trace(layer, spec), str(out / name))
    say("copying the tokenizer and configs")
    files = [name + suffix for name in programs for suffix in PROGRAM_FILES] + _copy_model_files(model_dir, out)
    weight_dtype = "bfloat16" if any(p.dtype == paddle.bfloat16 for p in model.parameters()) else "float32"
    write_manifest(out, dict(versions(), architecture=model.config.architecture, dtype=dtype, weight_dtype=weight_dtype,
                             quantization=model.quant.to_dict() if model.quant else None, block_size=block_size,
                             kv_cache_dtype=kv_dtype, source=str(model_dir.resolve()),
                             inputs={name: describe_inputs(spec) for name, (_, spec) in programs.items()},
                             files=file_sizes(out, files)))


def _copy_model_files(model_dir: Path, out_dir: Path) -> list:
    """Every file of the checkpoint but its weights; their names."""
    names = []
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(path, out_dir / path.name)
            names.append(path.name)
    return names


def _reporter(progress: bool):
    def say(message: str) -> None:
        if progress:
            print(f"export: {message}", file=sys.stderr, flush=True)
    say.progress = progress
    return say
