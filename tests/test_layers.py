"""Layers stay apart: ui -> (HTTP) -> backend -> service <- worker -> rekd_core, and the engine
imports nothing from the web, queue or UI layers. The import rules are import-linter contracts
(pyproject.toml [tool.importlinter]); here pytest runs `lint-imports` on them too."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    cmd = str(lint) if lint.exists() else shutil.which("lint-imports")
    assert cmd, "lint-imports is not installed (pip install -e '.[test]')"
    out = subprocess.run([cmd, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_no_pickle_based_loading_anywhere():
    for path in ROOT.glob("rekd_core/**/*.py"):  # every module, the subpackages included
        text = path.read_text()
        assert "torch.load(" not in text and "import pickle" not in text, path
