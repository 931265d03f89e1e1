"""An exported model run through paddle.inference, behind the interface ModelRunner drives
(config, compute_dtype, get_image_features, get_video_features, step): no model classes built.

Each call feeds the program's inputs by name. Tensors already in Paddle (the KV caches, media
embeddings) are shared, not copied: the decoder step writes the new keys and values into the
caller's cache tensors in place. Host arrays are copied in (they are small: ids, positions, layout).
"""
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import paddle
from paddle import inference

from .. import settings
from ..config import ModelConfig
from ..ops.paged_attention import token_layout
from ..ops.threads import num_threads
from ..processing.vision_grid import GRID_INPUTS
from ..quantization import QuantConfig
from .manifest import ExportError, require_compiled_ops
from .programs import DECODER_STEP, VISION_TOWER, kv_cache_names


# an op's num_threads attribute in a PIR program (.json) as Paddle 3.3.1 writes it
THREADS_ATTRIBUTE = re.compile(r'("#":"0\.a_i64","D":)-?\d+(\},"N":"num_threads")')


def program_for_threads(program: Path, threads: int) -> Path:
    """`program` with every compiled op's num_threads attribute set to `threads`: the file itself
    when it says so already, else a copy in the cache. Our ops take their thread count as an
    attribute (traced at export), and paddle.inference runs them on its own worker threads, whose
    OpenMP default is 1: the count must be in the program."""
    text = program.read_text()
    patched = THREADS_ATTRIBUTE.sub(rf"\g<1>{threads}\g<2>", text)
    if patched == text:
        return program
    out = settings.cache_dir() / "static" / "programs" / (hashlib.sha256(patched.encode()).hexdigest()[:16] + ".json")
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f"{out.name}.{os.getpid()}")
        partial.write_text(patched)
        os.replace(partial, out)
    return out


def _predictor(prefix: Path, threads: int):
    config = inference.Config(str(program_for_threads(Path(str(prefix) + ".json"), threads)),
                              str(prefix) + ".pdiparams")
    config.disable_glog_info()
    # Paddle 3.3.1's inplace_pass lets sin() overwrite the cos() output of the same angles (both
    # outputs then hold sin(cos(x))): the rotary tables came out wrong. Without it they are exact.
    config.delete_pass("inplace_pass")
    config.set_cpu_math_library_num_threads(threads)
    try:
        return inference.create_predictor(config)
    except Exception as exc:            # Paddle raises several kinds for a damaged program
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"paddle.inference could not load {prefix}.json / .pdiparams ({reason}): "
                          f"export again into a new directory") from exc


def _run(predictor, inputs: dict) -> np.ndarray:
    """Feeds `inputs` (name -> paddle.Tensor or numpy array; the tensors shared) and returns the
    first output. The dict keeps the shared tensors alive until run() returns."""
    for name in predictor.get_input_names():
        value, handle = inputs[name], predictor.get_input_handle(name)
        if isinstance(value, paddle.Tensor):
            handle.share_external_data(value)
        else:
            handle.copy_from_cpu(np.ascontiguousarray(value))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


class StaticModel:
    def __init__(self, export_dir, manifest: dict):
        export_dir = Path(export_dir)
        require_compiled_ops()          # and registers them with paddle.inference
        self.config = ModelConfig.from_dir(export_dir)
        self.compute_dtype, self.weight_dtype = manifest["dtype"], manifest["weight_dtype"]
        self.quant = QuantConfig.from_dict(manifest["quantization"])
        self.block_size = manifest["block_size"]
        threads = num_threads()
        self.vision = _predictor(export_dir / VISION_TOWER, threads)
        self.decoder = _predictor(export_dir / DECODER_STEP, threads)
        self.tp = None                  # an export is one process's whole model
        self.num_kv_heads = self.config.text.num_key_value_heads

    def get_image_features(self, pixel_values, grid_thw) -> paddle.Tensor:
        """pixel_values (N, patch_dim), grid_thw list of (t, h, w) -> (N / merge^2, hidden)."""
        grid = [tuple(int(v) for v in row) for row in grid_thw]
        inputs = dict(GRID_INPUTS[self.config.architecture](self.config.vision, grid), pixel_values=pixel_values)
        return paddle.to_tensor(_run(self.vision, inputs))

    get_video_features = get_image_features

    def step(self, input_ids, positions, media_rows, media_embeds, attn_meta, kv_caches, logit_rows):
        """As the dygraph model's step(): logits (len(logit_rows), vocab)."""
        if attn_meta.block_size != self.block_size:
            raise ValueError(f"this export's decoder step pages its cache in blocks of {self.block_size} "
                             f"tokens; run it with block_size={self.block_size} (got {attn_meta.block_size})")
        token_seq, token_ctx = token_layout(attn_meta)
        if media_rows is None:
            media_rows = np.zeros([0], dtype=np.int64)
            media_embeds = np.zeros([0, self.config.text.hidden_size], dtype=np.float32)
        inputs = dict(input_ids=input_ids, positions=positions, media_rows=media_rows, media_embeds=media_embeds,
                      slot_mapping=attn_meta.slot_mapping, block_tables=attn_meta.block_tables,
                      token_seq=token_seq, token_ctx=token_ctx, logit_rows=logit_rows)
        inputs.update(zip(kv_cache_names(len(kv_caches)), [cache for pair in kv_caches for cache in pair]))
        return paddle.to_tensor(_run(self.decoder, inputs))
