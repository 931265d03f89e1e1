"""manifest.json of an exported model: what made it (versions, ops build, dtype, quantization,
block size), its programs' inputs and the files it must hold. check_export() refuses an export
that is partial, corrupt or made by another version, with the file at fault and what to do.
"""
import json
from pathlib import Path

import paddle

from .. import __version__
from ..ops._build import build_info, compiled_ops, ops_version

MANIFEST = "manifest.json"
FORMAT = 1
REQUIRED = ("paddle", "paddle_qwenvl", "ops", "architecture", "dtype", "weight_dtype", "quantization", "block_size",
            "kv_cache_dtype", "inputs", "files")


class ExportError(ValueError):
    """An exported directory that cannot run as it is; the message names the file and the fix."""


def require_compiled_ops() -> None:
    """Exported programs call the compiled ops (with oneDNN, for the vision tower's attention)."""
    if compiled_ops() is None or not build_info()["onednn"]:
        raise ExportError("llm_mode static runs exported programs that call the compiled ops (built with "
                          "oneDNN), which are off or unavailable here: unset PADDLE_QWENVL_DISABLE_OPS, or "
                          "run with llm_mode dynamic")


def versions() -> dict:
    """What an export must have been made with to run here."""
    return {"paddle": paddle.__version__, "paddle_qwenvl": __version__, "ops": ops_version()}


def describe_inputs(spec) -> list:
    """InputSpecs (nested lists flattened) -> [{"name", "shape", "dtype"}] (None for a free dimension)."""
    flat = [s for item in spec for s in (item if isinstance(item, list) else [item])]
    return [{"name": s.name, "shape": [None if d in (-1, None) else int(d) for d in s.shape],
             "dtype": str(s.dtype).replace("paddle.", "")} for s in flat]


def file_sizes(directory: Path, names) -> dict:
    return {name: (directory / name).stat().st_size for name in names}


def write_manifest(directory: Path, fields: dict) -> None:
    (directory / MANIFEST).write_text(json.dumps(dict(fields, format=FORMAT), indent=2) + "\n")


def read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ExportError(f"{path} is missing: {directory} is not a complete export; "
                          f"export again with `paddle-qwenvl export MODEL_DIR {directory}`")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ExportError(f"{path} is not valid JSON ({exc}): export again into a new directory") from exc


def is_export(directory) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def check_export(directory, expected: dict) -> dict:
    """The manifest of `directory` when every file it lists is there at its size and `expected`
    (paddle, paddle_qwenvl, ops versions) agrees; else ExportError saying what to do."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{directory / MANIFEST} has format {manifest.get('format')!r}, this version reads "
                          f"{FORMAT}: export again with this version")
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise ExportError(f"{directory / MANIFEST} lacks {', '.join(missing)}: export again into a new directory")
    for name, size in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise ExportError(f"{path} is missing: the export is incomplete; export again into a new directory")
        if path.stat().st_size != size:
            raise ExportError(f"{path} has {path.stat().st_size} bytes, the manifest says {size}: the file is "
                              f"damaged or was replaced; export again into a new directory")
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise ExportError(f"{directory} was exported with {key} {manifest.get(key)!r}, this is {value!r}: "
                              f"export again with this version (`paddle-qwenvl export MODEL_DIR NEW_DIR`)")
    return manifest
