"""The package's layers point one way: a module imports only from lower layers or its own package.

     0 base        config, settings, quantization, sampling (the public parameters), assets
     5 memory      malloc thresholds (reads settings)
     5 distributed tensor-parallel group and its watched collectives (reads settings)
    10 ops         kernel wrappers        processing  images, videos, chat, tokenizer
    20 layers
    25 weights     safetensors -> parameters
    30 models
    40 engine
    45 static      exported programs through paddle.inference (export, manifest, loader)
    50 predictor
    55 evaluation  benchmark readers, metrics, prompts, scoring
    60 tools       random checkpoints, benchmark toolkit, checkpoint writer
    65 serving     the OpenAI-compatible server
    68 webui       the web chat page (over a predictor or the server's client)
    70 cli
Imports inside functions count too. `paddle_qwenvl/__init__.py` is the public facade: it may
import anything (lazily), and anything may import its `__version__`.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "paddle_qwenvl"
RANKS = {
    "config": 0, "settings": 0, "quantization": 0, "sampling": 0, "assets": 0,
    "memory": 5,
    "distributed": 5,
    "ops": 10, "processing": 10,
    "layers": 20,
    "weights": 25,
    "models": 30,
    "engine": 40,
    "static": 45,
    "predictor": 50,
    "evaluation": 55,
    "tools": 60,
    "serving": 65,
    "webui": 68,
    "cli": 70,
}


def unit_of(module: str) -> str:
    """'paddle_qwenvl.ops.linear' -> 'ops'; '' for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), path, is_package


def imported_modules(name: str, path: Path, is_package: bool):
    """Every paddle_qwenvl module that `path` imports, absolute and relative, at any depth."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # `from . import x` / `from .. import x`: x is a module of that package, or a name in it
            targets = [_submodule(module, a.name) if not node.module else module for a in node.names]
        else:
            continue
        for target in targets:
            if target == "paddle_qwenvl" or target.startswith("paddle_qwenvl."):
                yield node.lineno, target


def _submodule(package: str, name: str) -> str:
    """package.name if that is a module or package, else package (a name defined in it)."""
    path = PACKAGE.parent.joinpath(*package.split("."), name)
    return f"{package}.{name}" if path.is_dir() or path.with_suffix(".py").is_file() else package


def violations():
    found = []
    for name, path, is_package in modules():
        unit = unit_of(name)
        if unit == "":                                 # the facade
            continue
        if unit not in RANKS:
            found.append(f"{name}: not placed in a layer; add {unit!r} to RANKS in this test")
            continue
        for line, target in imported_modules(name, path, is_package):
            other = unit_of(target)
            if other in ("", unit):
                continue
            if other not in RANKS:
                found.append(f"{name}:{line} imports {target}, which is in no layer")
            elif RANKS[other] >= RANKS[unit]:
                found.append(f"{name}:{line} ({unit}, layer {RANKS[unit]}) imports {target} "
                             f"({other}, layer {RANKS[other]})")
    return found


def test_layering_imports_point_down():
    assert violations() == []


def test_layering_check_sees_a_violation(tmp_path, monkeypatch):
    """The check itself: an ops module importing the engine is reported."""
    pkg = tmp_path / "paddle_qwenvl"
    (pkg / "ops").mkdir(parents=True)
    (pkg / "engine").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "runner.py").write_text("from ..ops import linear\n")
    (pkg / "ops" / "bad.py").write_text("def f():\n    from ..engine.runner import x\n")
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    assert violations() == ["paddle_qwenvl.ops.bad:2 (ops, layer 10) imports paddle_qwenvl.engine.runner "
                            "(engine, layer 40)"]


@pytest.mark.parametrize("unit", sorted(RANKS))
def test_layering_every_layer_exists_or_is_reserved(unit):
    """A rank entry names a module or package of paddle_qwenvl (serving: reserved for the server)."""
    exists = (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").is_file()
    assert exists or unit == "serving"
