"""The spec and the README say what the code does."""

from __future__ import annotations

from pathlib import Path

from kithnet.core.errors import REASONS
from kithnet.core.kinds import KINDS
from tests.spec_sync import SPEC, render

ROOT = Path(__file__).parent.parent


def test_spec_lists_every_kind_as_the_code_defines_it() -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert render(text) == text, "docs/protocol.md is stale: run python -m tests.spec_sync"
    for kind in KINDS:
        assert f"### `{kind}`" in text


def test_spec_names_every_reason_code() -> None:
    text = SPEC.read_text(encoding="utf-8")
    for reason in REASONS:
        assert f"`{reason}`" in text


def test_readme_opens_with_what_kithnet_is_and_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# Kithnet")
    assert "make run" in readme
    assert "make test" in readme
