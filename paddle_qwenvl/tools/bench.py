"""The benchmark toolkit: timed runs of a batch of requests and their report (vision, prefill,
decode tokens/s, end-to-end seconds, peak memory), resident memory, the weight bytes one decode
step reads, and random real-size checkpoints built once and cached. The timer and the bandwidth
probe are in timing.py; rates against machine limits in roofline.py.

Imports no Paddle at module level, so HF-side benchmark processes can use it too."""
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np


# Engine options for timing repeated runs of one request: every run pays its vision tower and its
# whole prefill, as a new request would (prefix caching and the encoder cache would skip them).
UNCACHED = dict(enable_prefix_caching=False, encoder_cache_memory=0)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024          # reported in kB
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def resident_bytes() -> int:
    """VmRSS: RAM this process holds now."""
    return _status_bytes("VmRSS")


def peak_resident_bytes() -> int:
    """VmHWM: the most RAM this process has held (weights + caches + activations + Python)."""
    return _status_bytes("VmHWM")


class PeakAnonymous:
    """Context manager sampling RssAnon (this process's own memory: heap, tensors) every `interval`
    seconds; `.peak` is the highest seen. VmHWM also counts file pages mapped while reading
    safetensors shards (page cache the kernel can drop), up to a whole shard while it is open."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak = interval, 0

    def __enter__(self):
        import threading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while True:
            self.peak = max(self.peak, _status_bytes("RssAnon"))
            if self._stop.wait(self.interval):
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_bytes("RssAnon"))


def decode_weight_bytes(model, bytes_per_weight: float = 4.0, lm_head_bytes: float = 4.0):
    """Bytes of weights one decode step reads: every decoder linear (float or quantized) and the
    lm_head (or the tied embedding matrix). Embedding rows, norms, biases and a short prompt's KV
    cache are not counted (each under 2% of a 2B model's).

    model: a loaded model (its bytes as held; the two widths are ignored), or a checkpoint directory
    (parameter counts from its config.json, `bytes_per_weight` each in the decoder, `lm_head_bytes`
    in the lm_head: an estimate before loading)."""
    if isinstance(model, (str, os.PathLike)):
        return _config_weight_bytes(model, bytes_per_weight, lm_head_bytes)
    from ..layers.linear import Linear, WeightOnlyLinear
    total = 0
    for layer in model.model.layers.sublayers():
        if isinstance(layer, Linear):
            total += _nbytes(layer.weight)
        elif isinstance(layer, WeightOnlyLinear):
            total += _nbytes(layer.qweight) + _nbytes(layer.scales)
    head = getattr(model, "lm_head", None)
    if head is None:
        return total + _nbytes(model.model.embed_tokens.weight)
    return total + (_nbytes(head.weight) if isinstance(head, Linear) else _nbytes(head.qweight) + _nbytes(head.scales))


def _config_weight_bytes(model_dir, bytes_per_weight: float, lm_head_bytes: float) -> float:
    c = json.loads((Path(model_dir) / "config.json").read_text())
    h, inter = c["hidden_size"], c["intermediate_size"]
    head_dim = h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * head_dim, c["num_key_value_heads"] * head_dim
    per_layer = h * (q + 2 * kv) + q * h + 3 * h * inter
    return c["num_hidden_layers"] * per_layer * bytes_per_weight + c["vocab_size"] * h * lm_head_bytes


def _nbytes(t) -> int:
    return int(np.prod(t.shape)) * t.element_size()


def cached_preset_checkpoint(preset: str, num_layers: int = None, dtype: str = "bfloat16", root=None) -> Path:
    """A random real-size checkpoint of `preset` (tools.presets), cut to `num_layers` decoder
    layers, built on first use as root/<preset>-L<layers> (default root: the cache's bench/ folder;
    the directory name gains -<dtype> unless bfloat16, the published dtype). Built in a temporary
    directory and renamed into place, so an interrupted build is never used."""
    from .demo_model import cache_root
    from .presets import PRESETS
    from .tiny import make_preset_checkpoint
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    layers = num_layers or PRESETS[preset][1]["num_hidden_layers"]
    name = f"{preset}-L{layers}" + ("" if dtype == "bfloat16" else f"-{dtype}")
    target = Path(root or cache_root() / "bench") / name
    if not (target / "config.json").is_file():
        print(f"building a random {preset} checkpoint with {layers} layers in {target} (once) ...",
              file=sys.stderr, flush=True)
        tmp = target.with_name(f"{target.name}.building-{os.getpid()}")
        make_preset_checkpoint(tmp, preset, num_layers=layers, dtype=dtype)
        try:
            os.replace(tmp, target)
        except OSError:                   # another process finished first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class RunStats:
    """One timed generate() of the whole batch. Stage times are seconds of wall time."""
    end_to_end: float
    vision: float              # vision tower, summed over the batch's requests (each its share of the calls)
    prefill: float             # prefill steps (shared by the batch)
    decode: float              # decode steps (shared by the batch)
    prompt_tokens: int         # summed over the batch
    completion_tokens: int     # summed over the batch
    decode_tokens: int         # tokens made by decode steps: completion minus one per request

    @property
    def other(self) -> float:
        """Preprocessing (image/video decode, resize, tokenize) and detokenizing."""
        return max(self.end_to_end - self.vision - self.prefill - self.decode, 0.0)


def stats_of(outputs, seconds: float) -> RunStats:
    return RunStats(end_to_end=seconds, vision=sum(o.timings.vision for o in outputs),
                    prefill=max(o.timings.prefill for o in outputs),
                    decode=max(o.timings.decode for o in outputs),
                    prompt_tokens=sum(o.usage.prompt_tokens for o in outputs),
                    completion_tokens=sum(o.usage.completion_tokens for o in outputs),
                    decode_tokens=sum(max(o.usage.completion_tokens - 1, 0) for o in outputs))


def timed_generate(predictor, requests: list, sampling):
    """(outputs, RunStats) of one generate() over all `requests`. predictor: a Predictor, or an
    LLMEngine with its PromptInputs requests."""
    start = time.perf_counter()
    outputs = predictor.generate(list(requests), sampling)
    return outputs, stats_of(outputs, time.perf_counter() - start)


def run_benchmark(predictor, requests: list, sampling, warmup: int, repeat: int, progress=print):
    """(outputs of the last run, stats of the timed runs)."""
    if warmup < 0 or repeat < 1:
        raise ValueError(f"need warm-up >= 0 and repeat >= 1 runs, got {warmup} and {repeat}")
    for i in range(warmup):
        timed_generate(predictor, requests, sampling)
        progress(f"warm-up {i + 1}/{warmup} done")
    runs = []
    for i in range(repeat):
        outputs, stats = timed_generate(predictor, requests, sampling)
        runs.append(stats)
        progress(f"run {i + 1}/{repeat}: {stats.end_to_end:.3f} s end-to-end, "
                 f"{stats.completion_tokens} tokens")
    return outputs, runs


def summarize(runs: List[RunStats]) -> dict:
    """Means over the timed runs, rates from the means."""
    mean = {k: statistics.fmean(getattr(r, k) for r in runs)
            for k in ("end_to_end", "vision", "prefill", "decode", "other")}
    first = runs[0]
    return dict(runs=len(runs), prompt_tokens=first.prompt_tokens, completion_tokens=first.completion_tokens,
                seconds=mean, end_to_end_min=min(r.end_to_end for r in runs),
                prefill_tokens_per_s=_rate(first.prompt_tokens, mean["prefill"]),
                decode_tokens_per_s=_rate(first.decode_tokens, mean["decode"]),
                end_to_end_tokens_per_s=_rate(first.completion_tokens, mean["end_to_end"]),
                peak_memory_bytes=peak_resident_bytes(), per_run=[asdict(r) for r in runs])


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else float("nan")


def linear_flops(predictor, requests: list) -> Optional[dict]:
    """{"vision", "prefill"}: the floating-point operations (2 per multiply-add) of the linear layers
    each stage runs for `requests` (messages) with the caches off: the vision tower once per
    distinct media content (a step encodes a repeated one once), the decoder once per prompt token.
    Attention is left out. None for a model without its layers here (an export, a tensor-parallel
    share)."""
    from ..engine.model_runner import media_key
    from ..layers.linear import linear_macs
    model = predictor.engine.runner.model
    if not hasattr(model, "model") or getattr(model, "tp", None) is not None:
        return None
    tower, prompt, media = model.visual, 0, {}
    for request in requests:
        inputs = predictor.prepare(request)
        prompt += len(inputs.input_ids)
        for kind, pixels, grids in (("image", inputs.pixel_values, inputs.image_grid_thw),
                                    ("video", inputs.pixel_values_videos, inputs.video_grid_thw)):
            if grids:
                media[media_key(kind, grids, pixels)] = sum(t * h * w for t, h, w in grids)
    patches = sum(media.values())
    per_patch = sum(linear_macs(block) for block in tower.blocks) + tower.patch_embed.patch_dim * \
        tower.patch_embed.hidden_size
    merged = patches // tower.cfg.spatial_merge_size ** 2
    return dict(vision=2 * (patches * per_patch + merged * linear_macs(tower.merger)),
                prefill=2 * prompt * linear_macs(model.model.layers))


def dot_peaks(threads: Optional[int] = None) -> dict:
    """{"bf16", "int8"}: the rate (TOP/s) of the dot-product instructions this CPU has (tools.timing.
    DotPeak, probed now), the ceilings of the stages' bf16 and VNNI GEMMs where no AMX runs them.
    Empty without compiled ops or AVX512."""
    from .timing import DOT_KINDS, DotPeak
    peaks = {}
    for kind in DOT_KINDS:
        try:
            peaks[kind] = DotPeak(kind, threads)()
        except ValueError:              # no compiled ops, or not this instruction
            pass
    return peaks


def format_report(summary: dict, header: str, flops: Optional[dict] = None, peaks: Optional[dict] = None) -> str:
    """The summary as text; with `flops` (linear_flops) the TFLOP/s each stage's linear layers reach,
    with `peaks` (dot_peaks) the instructions' rates beside them."""
    s = summary["seconds"]
    rate = {stage: "" if not flops or not s[stage] else
            f"   {flops[stage] / s[stage] / 1e12:9.3f} TFLOP/s in its linear layers" for stage in ("vision", "prefill")}
    lines = [header,
             f"  tokens: prompt {summary['prompt_tokens']}, generated {summary['completion_tokens']} "
             f"(whole batch); means over {summary['runs']} timed run(s)",
             f"  vision       {s['vision']:9.3f} s{rate['vision']}",
             f"  prefill      {s['prefill']:9.3f} s   {summary['prefill_tokens_per_s']:9.1f} tokens/s{rate['prefill']}",
             f"  decode       {s['decode']:9.3f} s   {summary['decode_tokens_per_s']:9.1f} tokens/s",
             f"  other        {s['other']:9.3f} s   (preprocessing, detokenizing)",
             f"  end-to-end   {s['end_to_end']:9.3f} s   (best {summary['end_to_end_min']:.3f} s)",
             f"  peak memory  {summary['peak_memory_bytes'] / 2**30:9.2f} GiB (VmHWM: peak resident "
             "set of this process)"]
    if peaks:
        from .timing import DOT_KINDS
        lines.append("  this CPU now " + ", ".join(f"{k} {DOT_KINDS[k][2]} {v:.2f} TOP/s" for k, v in peaks.items()) +
                     " (registers only: the ceiling of GEMMs on those instructions)")
    return "\n".join(lines)


def write_json(path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
