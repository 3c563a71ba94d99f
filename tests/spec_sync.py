"""Keeps docs/protocol.md's table of record kinds equal to kithnet.core.kinds.

.venv/bin/python -m tests.spec_sync    # rewrite the table in place
"""

from __future__ import annotations

import re
from pathlib import Path

from kithnet.core.kinds import markdown_table

SPEC = Path(__file__).parent.parent / "docs" / "protocol.md"
BEGIN, END = "<!-- kinds:begin -->", "<!-- kinds:end -->"


def render(text: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    return pattern.sub(lambda _: f"{BEGIN}\n{markdown_table()}\n{END}", text, count=1)


if __name__ == "__main__":
    SPEC.write_text(render(SPEC.read_text(encoding="utf-8")), encoding="utf-8")
