"""A static model for a directory: an export loads as it is; a checkpoint is exported on first use
into a cache keyed by the checkpoint (path, file sizes and times), dtype, quantization, block size
and the versions (paddle, paddle-qwenvl, ops build), and reused afterwards. A cached export found
partial or damaged is rebuilt; a directory given as an export is refused instead (check_export)."""
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Optional

from .. import settings
from ..quantization import QuantConfig
from .manifest import ExportError, check_export, is_export, require_compiled_ops, versions
from .model import StaticModel


def load_export(export_dir, dtype: Optional[str] = None, quant: Optional[QuantConfig] = None,
                block_size: Optional[int] = None) -> StaticModel:
    """An exported directory; dtype / quant / block_size, when given, must be what it was exported with."""
    manifest = check_export(export_dir, versions())
    exported = dict(manifest, quantization=QuantConfig.from_dict(manifest["quantization"]))    # older dicts too
    asked = {"dtype": dtype, "quantization": quant, "block_size": block_size}
    for key, value in asked.items():
        if value is not None and exported[key] != value:
            raise ExportError(f"{export_dir} was exported with {key} {manifest[key]!r}, not {_shown(value)!r}: "
                              f"load it without that option, or export the checkpoint again with it")
    return StaticModel(export_dir, manifest)


def _shown(value):
    return value.to_dict() if isinstance(value, QuantConfig) else value


def cached_export(model_dir, dtype: str, quant: Optional[QuantConfig], block_size: int,
                  progress: bool = True) -> Path:
    """The cached export of checkpoint `model_dir`, made now if absent or damaged."""
    require_compiled_ops()
    out = settings.cache_dir() / "static" / export_key(model_dir, dtype, quant, block_size)
    if is_export(out):
        try:
            check_export(out, versions())
            return out
        except ExportError as exc:
            print(f"paddle-qwenvl: rebuilding the cached export ({exc})", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    from .export import export_model          # builds the model classes: only when exporting
    return export_model(model_dir, out, dtype, quant, block_size, progress)


def export_key(model_dir, dtype: str, quant: Optional[QuantConfig], block_size: int) -> str:
    model_dir = Path(model_dir).resolve()
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(model_dir.iterdir()) if p.is_file()}
    key = dict(versions(), source=str(model_dir), files=files, dtype=dtype,
               quantization=quant.to_dict() if quant else None, block_size=block_size)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
