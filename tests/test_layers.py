"""Layers stay apart: the engine imports nothing from the web, queue or UI layers."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"fastapi", "starlette", "celery", "redis", "gradio", "uvicorn", "plotly", "worker", "backend", "ui"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "rekd_core").glob("*.py")), ids=lambda p: p.name)
def test_engine_imports_no_web_queue_or_ui_code(path):
    assert not (_imports(path) & FORBIDDEN)


def test_no_pickle_based_loading_anywhere():
    for path in ROOT.glob("rekd_core/*.py"):
        text = path.read_text()
        assert "torch.load(" not in text and "import pickle" not in text, path


@pytest.mark.parametrize("path", sorted((ROOT / "ui").glob("**/*.py")), ids=lambda p: p.name)
def test_ui_talks_http_only(path):
    assert not (_imports(path) & {"torch", "timm", "transformers", "rekd_core", "worker", "backend"})
