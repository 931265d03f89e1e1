"""What every command shares: process set-up, loading a model, sampling flags, building a request,
and turning a bad input into one line on stderr instead of a traceback."""
import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_IMAGE = ASSETS / "demo.jpg"      # 448x336 drawn scene: sky, sun, hills, red house, tree
DEMO_VIDEO = ASSETS / "demo.mp4"      # 2 s, 8 fps, 224x168: a yellow ball crosses the same scene
FLOAT_DTYPES = ("auto", "float32", "bfloat16", "float16")


class UserError(Exception):
    """A problem with what the user asked for; main() prints it without a traceback."""


def quiet() -> bool:
    """PADDLE_QWENVL_QUIET=1 turns progress bars off (the tests set it)."""
    from .. import settings
    return settings.quiet()


def set_up_runtime(threads: Optional[int] = None) -> int:
    """Threads for our compiled ops and Paddle's own kernels (Paddle sets 1 on import), and MKL's
    fast path on AMD.

    MKL reads MKL_DEBUG_CPU_TYPE at its first call, so setting it here, after import, still works.
    Returns the thread count used."""
    os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    from ..ops.threads import num_threads, set_num_threads
    import paddle
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads}: give a positive number of threads")
    count = threads or num_threads()
    set_num_threads(count)            # our ops, as Paddle's own kernels: --threads binds both
    paddle.base.core.set_num_threads(count)
    from ..ops._build import compiled_ops
    compiled_ops()            # build or load now; its chatter is kept off stdout (run --json)
    return count


def resolve_dtype(dtype: str) -> str:
    """auto, float32 and bfloat16 run as asked (bfloat16: bf16 math, sums in fp32; auto: bfloat16 for
    a bf16 checkpoint on a CPU with native bf16, else float32; an exported model: its export's);
    float16 runs as float32, with a note: there are no fp16 kernels here."""
    if dtype not in FLOAT_DTYPES:
        raise UserError(f"--dtype {dtype!r} is not known; use auto, float32 or bfloat16")
    if dtype == "float16":
        warn("--dtype float16: no float16 kernels on this CPU build; float16 weights are converted to "
             "float32 on load (--dtype bfloat16 halves their memory instead)")
        return "float32"
    return dtype


def warn(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def check_model_dir(path) -> Path:
    """A local checkpoint directory, or a UserError saying how to get one."""
    if path is None:
        raise UserError("no model given: pass the directory of a downloaded Qwen2-VL / Qwen2.5-VL "
                        "checkpoint, or run `paddle-qwenvl make-tiny DIR` for a random test model")
    model_dir = Path(path).expanduser()
    if not (model_dir / "config.json").is_file():
        hint = (" (model hub names are not downloaded here: fetch it first, e.g. "
                f"`huggingface-cli download {path} --local-dir DIR`, and pass DIR)") if not model_dir.exists() else ""
        raise UserError(f"{path} is not a model directory: no config.json found{hint}")
    return model_dir


def load_predictor(model_dir, quant=None, dtype="auto", max_model_len=None, batch_size=1, engine=None,
                   llm_mode=None, **processor_options):
    """Predictor over `model_dir` with a KV cache sized for `batch_size` requests of max_model_len,
    which a step may prefill together (unless engine's max_num_batched_tokens says otherwise): a
    batch arrives at once, so its decode steps carry no prompt chunks of its own requests.
    quant: Predictor.from_pretrained's quantization keywords (see quant_options), or None;
    engine: its engine keywords (see engine_options), or None. dtype "auto": see
    weights.resolve_dtype (an exported model: its own); llm_mode None: static for an exported
    model, else dynamic."""
    from ..predictor import Predictor
    from ..static.manifest import is_export, read_manifest
    from ..weights import resolve_dtype as checkpoint_dtype
    if is_export(model_dir):
        dtype = read_manifest(model_dir)["dtype"] if dtype in (None, "auto") else dtype
    else:
        dtype = checkpoint_dtype(model_dir, dtype or "auto")      # the KV cache's size depends on it
    options = {k: v for k, v in processor_options.items() if v is not None}
    length = max_model_len or 4096
    engine = dict(engine or {})
    if batch_size > 1 and engine.get("max_num_batched_tokens") is None:
        engine["max_num_batched_tokens"] = length * batch_size
    return Predictor.from_pretrained(str(model_dir), dtype=dtype, llm_mode=llm_mode, **(quant or {}), **engine,
                                     max_model_len=length, max_num_seqs=max(batch_size, 1),
                                     kv_cache_memory=kv_cache_bytes(model_dir, length * max(batch_size, 1),
                                                                    dtype=dtype),
                                     progress=not quiet(), **options)


def kv_cache_bytes(model_dir, tokens: int, block_size: int = None, dtype: str = "float32") -> int:
    """KV cache bytes for `tokens` tokens of a model computing in `dtype`, rounded up to whole
    blocks (one spare)."""
    from ..config import ModelConfig
    from ..engine.block_manager import BLOCK_SIZE
    from ..engine.model_runner import kv_block_bytes, kv_cache_dtype
    block_size = block_size or BLOCK_SIZE
    blocks = -(-tokens // block_size) + 1
    return blocks * kv_block_bytes(ModelConfig.from_dir(model_dir).text, block_size, kv_cache_dtype(dtype))


def add_sampling_args(p: argparse.ArgumentParser, max_new_tokens: int = 128) -> None:
    g = p.add_argument_group("sampling (unset: the model's generation_config.json)")
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    g.add_argument("--min-new-tokens", type=int, default=None)
    g.add_argument("--temperature", type=float, default=None, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=None, help="0 = off")
    g.add_argument("--top-p", type=float, default=None, help="1 = off")
    g.add_argument("--repetition-penalty", type=float, default=None, help="1 = off")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens")


def sampling_from(predictor, max_new_tokens, min_new_tokens=None, temperature=None, top_k=None,
                  top_p=None, repetition_penalty=None, seed=None, ignore_eos=False):
    """The checkpoint's default sampling with the given values replacing its fields."""
    import dataclasses
    given = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, temperature=temperature,
                 top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, seed=seed)
    changes = {k: v for k, v in given.items() if v is not None}
    if ignore_eos:
        changes["ignore_eos"] = True
    sampling = dataclasses.replace(predictor.default_sampling, **changes)
    unused = [name for name in ("top_k", "top_p") if given[name] is not None]
    if sampling.greedy and unused:
        warn(f"{', '.join(unused)}: no effect with greedy decoding (temperature 0"
             f"{' from generation_config.json' if temperature is None else ''}); give a temperature > 0 to sample")
    return sampling


def user_message(text: str, images: List[str] = (), videos: List[str] = (), video_options=None) -> dict:
    """One user turn: images, then videos, then the text (the order Qwen's examples use)."""
    content = [{"type": "image", "image": check_file(i, "image")} for i in images]
    content += [dict({"type": "video", "video": check_file(v, "video")}, **(video_options or {}))
                for v in videos]
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def check_file(path: str, kind: str) -> str:
    if "://" in path or path.startswith("data:"):
        return path
    if not os.path.isfile(path):
        raise UserError(f"{kind} file not found: {path}")
    return path


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", default=None,
                   help="checkpoint directory (config.json, *.safetensors, tokenizer); "
                        "default: the random-weight demo model")
    g.add_argument("--dtype", default="auto", choices=FLOAT_DTYPES,
                   help="auto: bfloat16 for a bf16 checkpoint (as published) on a CPU with native bf16 "
                        "(AVX512-BF16 or AMX), else float32; float32: fp32 math (a bf16 checkpoint's weights are held in bf16 as they are); "
                        "bfloat16: bf16 math (faster prefill and vision tower, bf16 KV cache); "
                        "float16 runs as float32 (with a note); an exported model runs in its export's dtype")
    g.add_argument("--max-model-len", type=int, default=4096, help="prompt + output tokens per request")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: $PADDLE_QWENVL_NUM_THREADS or all usable cores)")
    g.add_argument("--llm-mode", "--llm_mode", dest="llm_mode", default=None, choices=("dynamic", "static"),
                   help="dynamic: the model in Paddle's dygraph; static: exported Paddle inference programs "
                        "(a checkpoint is exported into a cache once). Default: static for a directory written "
                        "by `paddle-qwenvl export`, else dynamic")
    add_quant_args(p)
    add_engine_args(p)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--no-prefix-caching", dest="prefix_caching", action="store_false",
                   help="recompute every prompt whole (default: reuse the KV blocks of a repeated prefix)")
    from ..engine.encoder_cache import ENCODER_CACHE_MEMORY
    g.add_argument("--encoder-cache-memory", type=parse_size, default=ENCODER_CACHE_MEMORY, metavar="SIZE",
                   help="vision embeddings kept by image/video content, e.g. 256M (default), 1G, 0 = off")
    g.add_argument("--max-num-batched-tokens", type=int, default=None, metavar="N",
                   help="tokens per step (default: --max-model-len); longer prompts are prefilled in "
                        "chunks between the decode steps of running requests")


def parse_size(text: str) -> int:
    """'256M', '1G', '512K' or a number of bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give bytes or a number with K, M or G") from None


def engine_options(args) -> dict:
    """The engine flags as Predictor.from_pretrained keywords."""
    return dict(enable_prefix_caching=args.prefix_caching, encoder_cache_memory=args.encoder_cache_memory,
                max_num_batched_tokens=args.max_num_batched_tokens)


def add_quant_args(p: argparse.ArgumentParser, underscores: bool = False) -> None:
    """--quant-type and its switches; `underscores` lists the PaddleMIX spelling (--quant_type)
    first, for the deploy scripts. Both spellings work everywhere."""
    from ..quantization import QUANT_TYPES
    g = p.add_argument_group("weight-only quantization (done while loading; see docs/quantization.md)")

    def flag(name, **kw):
        names = [f"--{name}", f"--{name.replace('_', '-')}"]
        g.add_argument(*(names if underscores else names[::-1]), dest=name, **kw)
    flag("quant_type", default=None, choices=QUANT_TYPES, metavar="TYPE",
         help=f"quantize the decoder's linear layers: {' or '.join(QUANT_TYPES)}")
    flag("quant_group_size", type=int, default=128, choices=(64, 128), metavar="N",
         help="int4: weights per scale, 64 or 128 (default 128)")
    flag("quantize_vision", action="store_true", help="also the vision tower's linear layers")
    flag("quantize_lm_head", action=argparse.BooleanOptionalAction, default=True,
         help="with a quant type, the lm_head too, in int8 (default; with tied embeddings the token lookup "
              "reads the quantized table); --no-quantize-lm-head keeps it float")


def quant_options(args) -> dict:
    """The quantization flags as Predictor.from_pretrained keywords."""
    return dict(quant_type=args.quant_type, quant_group_size=args.quant_group_size,
                quantize_vision=args.quantize_vision, quantize_lm_head=args.quantize_lm_head)


def describe_quant(predictor) -> str:
    """How the loaded model is quantized ('none' or QuantConfig.describe()), for reports."""
    quant = predictor.model.quant
    return quant.describe() if quant else "none"


def add_media_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images and videos")
    g.add_argument("--image", "-i", action="append", default=[], help="image path or URL (repeatable)")
    g.add_argument("--video", "-v", action="append", default=[], help="video path or URL (repeatable)")
    add_processor_args(g)


def add_processor_args(g) -> None:
    """--min-pixels, --max-pixels, --fps, --video-max-pixels (read by processor_options)."""
    g.add_argument("--min-pixels", type=int, default=None, help="per image (default: preprocessor_config.json)")
    g.add_argument("--max-pixels", type=int, default=None, help="per image (default: preprocessor_config.json)")
    g.add_argument("--fps", type=float, default=None, help="video frames sampled per second (default 2)")
    g.add_argument("--video-max-pixels", type=int, default=None, help="per video frame (default 602112)")


def processor_options(args) -> dict:
    return dict(min_pixels=args.min_pixels, max_pixels=args.max_pixels, fps=args.fps,
                video_max_pixels=args.video_max_pixels)


def predictor_from_args(args, batch_size: int = 1):
    """set_up_runtime + the model of --model (or the demo model, with a note) loaded."""
    set_up_runtime(args.threads)
    model_dir = args.model
    if model_dir is None:
        from ..tools.demo_model import demo_checkpoint
        model_dir = demo_checkpoint()
        warn(f"no --model given: using the random-weight demo model {model_dir} (answers are meaningless)")
    return load_predictor(check_model_dir(model_dir), quant_options(args), dtype=resolve_dtype(args.dtype),
                          max_model_len=args.max_model_len, batch_size=batch_size, engine=engine_options(args),
                          llm_mode=args.llm_mode, **processor_options(args))


def sampling_from_args(predictor, args):
    return sampling_from(predictor, args.max_new_tokens, args.min_new_tokens, args.temperature, args.top_k,
                         args.top_p, args.repetition_penalty, args.seed, args.ignore_eos)


def require_extra(module: str, extra: str) -> None:
    """A UserError naming the extra to install when `module` is missing (checked before long work)."""
    import importlib.util
    if importlib.util.find_spec(module) is None:
        raise UserError(f"this needs {module} (the {extra} extra): pip install 'paddle-qwenvl[{extra}]' "
                        f"(or '.[{extra}]' in a checkout)")
