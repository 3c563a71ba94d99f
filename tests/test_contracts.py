"""The import-linter contracts really refuse a layer crossing (not just pass)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [lint, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_contracts_break_when_core_imports_trio_or_p2p_imports_the_store(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "kithnet", tmp_path / "kithnet", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert lint_imports(tmp_path).returncode == 0
    (tmp_path / "kithnet" / "core" / "bad.py").write_text("import trio\n")
    (tmp_path / "kithnet" / "p2p" / "bad.py").write_text("import kithnet.localstore\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "core and crypto stay pure" in result.stdout
    assert "kithnet.core.bad -> trio" in result.stdout
    assert "kithnet.p2p.bad -> kithnet.localstore" in result.stdout
