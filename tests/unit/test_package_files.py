"""What an installed (not editable) package holds: every folder of Python modules is a regular
package, so setup.py's find_packages ships it."""
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_folder_is_a_package_that_setup_finds():
    folders = {p.parent for p in (ROOT / "paddle_qwenvl").rglob("*.py")}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == []
    found = set(find_packages(str(ROOT), include=["paddle_qwenvl*"]))
    assert {str(f.relative_to(ROOT)).replace("/", ".") for f in folders} <= found
