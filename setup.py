"""Packaging beyond pyproject.toml: the C++ sources of external_ops/ (every op folder, and the
vendored oneDNN headers) ship inside the package as paddle_qwenvl/external_ops, so the ops can be
compiled on first use after a plain install (paddle_qwenvl/ops/_build.py)."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["paddle_qwenvl*"]) + ["paddle_qwenvl.external_ops"],
    package_dir={"paddle_qwenvl.external_ops": "external_ops"},
    package_data={"paddle_qwenvl": ["assets/*"],
                  "paddle_qwenvl.external_ops": ["**/*.cc", "**/*.h", "third_party/onednn/*",
                                                 "third_party/onednn/include/oneapi/dnnl/*"]},
)
