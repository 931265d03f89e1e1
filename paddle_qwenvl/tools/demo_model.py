"""The embedded demo's model: a small random-weight checkpoint, built once and cached under
$PADDLE_QWENVL_CACHE (default ~/.cache/paddle_qwenvl)."""
import os
import shutil
import sys
import time
from pathlib import Path

from .. import __version__

# Small but not trivial, so timings mean something: builds in a few seconds, ~30 MB of float32.
DEMO_TEXT = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, mrope_section=[8, 12, 12])          # head_dim 64
DEMO_VISION = {"qwen2_vl": dict(depth=4, embed_dim=128, num_heads=2, mlp_ratio=2),
               "qwen2_5_vl": dict(depth=4, hidden_size=128, num_heads=2, intermediate_size=256,
                                  window_size=112, fullatt_block_indexes=[1, 3], tokens_per_second=2)}
FAMILY_NAMES = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL"}


def cache_root() -> Path:
    from ..settings import cache_dir          # $PADDLE_QWENVL_CACHE, default ~/.cache/paddle_qwenvl
    return cache_dir()


def demo_checkpoint(family: str = "qwen2_5_vl", rebuild: bool = False) -> Path:
    """The cached demo model directory of `family`, built on first use.

    Built in a temporary directory and renamed into place, so an interrupted build is never used."""
    if family not in DEMO_VISION:
        raise ValueError(f"family must be one of {sorted(DEMO_VISION)}, got {family!r}")
    target = cache_root() / f"demo-{family}-{__version__}"
    if rebuild and target.exists():
        shutil.rmtree(target)
    if not (target / "config.json").is_file():
        _build(target, family)
    return target


def _build(target: Path, family: str) -> None:
    from .tiny import make_tiny_checkpoint
    tmp = target.with_name(f"{target.name}.building-{os.getpid()}")
    start = time.perf_counter()
    make_tiny_checkpoint(tmp, family, seed=0, text=DEMO_TEXT, vision=DEMO_VISION[family])
    try:
        os.replace(tmp, target)
    except OSError:                       # another process finished first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"built the demo checkpoint in {time.perf_counter() - start:.1f} s: {target}", file=sys.stderr)
