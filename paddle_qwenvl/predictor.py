"""The user-facing entry point: `Predictor.from_pretrained(dir).generate(messages)`."""
import json
import os
import time
from typing import Iterator, List, Optional, Union

import paddle

from .engine.inputs import PromptInputs
from .engine.block_manager import BLOCK_SIZE
from .engine.encoder_cache import ENCODER_CACHE_MEMORY
from .engine.llm_engine import EngineConfig, LLMEngine
from .engine.outputs import RequestOutput
from .engine.parallel_steps import run_tensor_parallel
from .distributed import join_tensor_parallel
from .memory import keep_freed_memory
from .config import AUTO, FLOAT_DTYPES
from .weights import resolve_dtype
from .processing import Processor
from .quantization import make_quant_config
from .sampling import SamplingParams
from .static import LLM_MODES
from .static.loader import cached_export, load_export
from .static.manifest import is_export



class Predictor:
    """Chat messages (text, images, videos) in, text out; many requests share one paged KV cache.

    A request is either a list of chat messages (OpenAI / Qwen format) or a dict
    {"prompt": text, "images": [...], "videos": [...]} whose prompt already holds the
    <|vision_start|><|image_pad|><|vision_end|> blocks (or the shorthand <image> / <video>).
    """

    def __init__(self, model, processor: Processor, engine_config: EngineConfig, load_seconds: float = 0.0,
                 default_sampling: Optional[SamplingParams] = None, llm_mode: str = "dynamic"):
        self.model, self.processor, self.llm_mode = model, processor, llm_mode
        self.engine = LLMEngine(model, processor.tokenizer, engine_config)
        self.load_seconds = load_seconds
        # used when generate()/stream() get no sampling: what HF generate() would do
        self.default_sampling = default_sampling or SamplingParams(temperature=0.0)

    @property
    def dtype(self) -> str:
        """The model's math: "float32", or "bfloat16" (from_pretrained(dtype=...))."""
        return self.model.compute_dtype

    @property
    def weight_dtype(self) -> str:
        """"bfloat16" when the float weights are held in bf16 (a bfloat16 model, or a float32 one
        loaded from a bf16 checkpoint), else "float32"."""
        if self.llm_mode == "static":
            return self.model.weight_dtype
        return "bfloat16" if any(p.dtype == paddle.bfloat16 for p in self.model.parameters()) else "float32"

    @classmethod
    def from_pretrained(cls, model_dir, dtype: str = AUTO, quant_type: Optional[str] = None,
                        max_model_len: int = 4096, block_size: Optional[int] = None, kv_cache_memory: int = 1 << 30,
                        max_num_seqs: int = 16, progress: bool = True, quant_group_size: int = 128,
                        quantize_vision: bool = False, quantize_lm_head: bool = True,
                        enable_prefix_caching: bool = True, encoder_cache_memory: int = ENCODER_CACHE_MEMORY,
                        max_num_batched_tokens: Optional[int] = None, tensor_parallel_size: Optional[int] = None,
                        llm_mode: Optional[str] = None,
                        **processor_options) -> "Predictor":
        """Load a Qwen2-VL / QVQ / Qwen2.5-VL directory (config.json, safetensors, tokenizer files).

        dtype: "auto" (default): "bfloat16" for a bf16 checkpoint on a CPU with native bf16 (AVX512-BF16
        or AMX), else "float32" (weights.resolve_dtype). "float32" (fp32 math; the bf16 weights of a published checkpoint are held as they
        are and widened exactly as they are used: half the memory and decode bytes), or "bfloat16"
        (bf16 math: x rounded to bf16 for the linears, sums in fp32; see models.registry.load_model).
        quant_type: None, "weight_only_int8" or "weight_only_int4" (decoder linears quantized on load;
        quant_group_size 64/128 for int4). The lm_head (and a tied embedding) is quantized too, in
        int8 under either type, unless quantize_lm_head=False; quantize_vision adds the vision tower.
        A directory written by save_quantized() loads already quantized, with no quant_type.
        max_model_len: prompt + output tokens of one request. kv_cache_memory: bytes of the paged
        KV cache (float32; bf16 for a bfloat16 model); it must hold at least max_model_len tokens,
        requests beyond what fits at once wait or are preempted and recomputed. max_num_seqs: sequences per step.
        enable_prefix_caching: a prompt that starts like an earlier one (the next turn of a chat)
        reuses its KV blocks and computes only the rest; encoder_cache_memory: bytes of vision
        embeddings kept by image/video content, so a known image costs no vision time.
        max_num_batched_tokens: tokens per step (default max_model_len); a longer prompt is
        prefilled in chunks between the running requests' decode steps.
        tensor_parallel_size: N processes, each holding its share of the decoder (docs/usage.md,
        Tensor parallelism). Under `python -m paddle.distributed.launch --nproc_per_node N` the
        launch decides N (checked when given): on rank 0 this returns the Predictor, on the others
        it does not return (they run rank 0's steps and exit when rank 0's process ends). Without
        a launch, N > 1 starts N - 1 follower processes on this host and this process is rank 0.
        processor_options: min_pixels, max_pixels, fps, ... (defaults from preprocessor_config.json).
        Without a SamplingParams, generate() samples as generation_config.json says (like HF).
        llm_mode: "dynamic" (the model classes in dygraph) or "static" (Paddle inference programs:
        a directory written by `paddle-qwenvl export` loads as it is, a checkpoint is exported into
        a cache on first use; see paddle_qwenvl/static). Default: "static" for an exported
        directory, else "dynamic". An export runs in the dtype and block size it was exported
        with (dtype "auto" or None); block_size default 16.
        """
        llm_mode = llm_mode or ("static" if is_export(model_dir) else "dynamic")
        if llm_mode not in LLM_MODES:
            raise ValueError(f"llm_mode {llm_mode!r} is not supported; use one of {LLM_MODES}")
        if llm_mode == "dynamic" and is_export(model_dir):
            raise ValueError(f"{model_dir} is an exported model (manifest.json): load it with llm_mode='static'")
        if dtype is not None and dtype not in FLOAT_DTYPES + (AUTO,):
            raise ValueError(f"dtype {dtype!r} is not supported; use one of {FLOAT_DTYPES + (AUTO,)} "
                             "(float16 checkpoints load as float32 or bfloat16)")
        if llm_mode == "static" and (tensor_parallel_size or 1) > 1:
            raise ValueError("tensor parallelism runs the dynamic model only: use llm_mode='dynamic' "
                             "(or no tensor_parallel_size)")
        # an export runs in the dtype it was exported with; a checkpoint resolves "auto" now
        dtype = (None if dtype in (None, AUTO) else dtype) if is_export(model_dir) else \
            resolve_dtype(model_dir, dtype or AUTO)
        options = {k: v for k, v in locals().items() if k not in ("cls", "processor_options")}  # the arguments
        quant = make_quant_config(quant_type, quant_group_size, quantize_vision, quantize_lm_head)
        tp = join_tensor_parallel(tensor_parallel_size, dict(options, **processor_options))
        keep_freed_memory()           # reuse freed tensor memory instead of page-faulting it back in
        start = time.perf_counter()
        if llm_mode == "static":
            if not is_export(model_dir):
                model_dir = cached_export(model_dir, dtype, quant, block_size or BLOCK_SIZE, progress)
            model = load_export(model_dir, dtype, quant, block_size)
            block_size = model.block_size             # fixed at export
        else:
            from .models import load_model       # not imported for a static model: no model classes built
            model = load_model(model_dir, quant=quant, progress=progress and (tp is None or tp.is_driver),
                               dtype=dtype, tp=tp)
        processor = Processor.from_pretrained(model_dir, **processor_options)
        config = EngineConfig(max_model_len=max_model_len, block_size=block_size or BLOCK_SIZE,
                              kv_cache_memory=kv_cache_memory, max_num_seqs=max_num_seqs,
                              max_num_batched_tokens=max_num_batched_tokens,
                              enable_prefix_caching=enable_prefix_caching,
                              encoder_cache_memory=encoder_cache_memory)
        sampling = SamplingParams.from_generation_config(_read_generation_config(model_dir))
        predictor = cls(model, processor, config, time.perf_counter() - start, sampling, llm_mode)
        if tp is not None:
            run_tensor_parallel(predictor.engine.runner, tp)
        return predictor

    @property
    def tensor_parallel_size(self) -> int:
        """The processes the decoder is split over (1: not split)."""
        return self.model.tp.world_size if self.model.tp is not None else 1

    def prepare(self, request, **processor_options) -> PromptInputs:
        """One request -> token ids and pixels, exactly as the model will see them."""
        if isinstance(request, dict) and "prompt" in request:
            out = self.processor.from_prompt(request["prompt"], request.get("images", ()),
                                             request.get("videos", ()), **processor_options)
        elif isinstance(request, (list, tuple)):
            out = self.processor(list(request), **processor_options)
        else:
            raise TypeError("a request is a list of chat messages or a dict with 'prompt' "
                            f"(and optional 'images', 'videos'); got {type(request).__name__}")
        return PromptInputs(out.input_ids, out.pixel_values, out.image_grid_thw or None,
                            out.pixel_values_videos, out.video_grid_thw or None, out.second_per_grid_ts or None)

    def generate(self, requests, sampling: Union[SamplingParams, List[SamplingParams], None] = None,
                 **processor_options) -> Union[RequestOutput, List[RequestOutput]]:
        """Generate for one request (returns one output) or a list of requests (returns a list)."""
        single = _is_single_request(requests)
        batch = [requests] if single else list(requests)
        outputs = self.engine.generate([self.prepare(r, **processor_options) for r in batch],
                                       sampling or self.default_sampling)
        return outputs[0] if single else outputs

    def stream(self, requests, sampling: Union[SamplingParams, List[SamplingParams], None] = None,
               **processor_options) -> Iterator[RequestOutput]:
        """Outputs as text grows: each carries `delta`, the text added since its previous output."""
        batch = [requests] if _is_single_request(requests) else list(requests)
        yield from self.engine.stream([self.prepare(r, **processor_options) for r in batch],
                                      sampling or self.default_sampling)


def _read_generation_config(model_dir) -> dict:
    path = os.path.join(model_dir, "generation_config.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _is_single_request(requests) -> bool:
    if isinstance(requests, dict):
        return True
    if not isinstance(requests, (list, tuple)) or not requests:
        raise ValueError("requests must be a non-empty list of chat messages, a prompt dict, "
                         "or a list of those")
    first = requests[0]
    return isinstance(first, dict) and "role" in first
