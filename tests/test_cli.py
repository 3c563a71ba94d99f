"""The installed `kithnet` command, run as a person would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kithnet import __version__
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode

KITHNET = [sys.executable, "-m", "kithnet"]
VECTORS = Path(__file__).parent / "vectors" / "records.jsonl"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KITHNET, *args], capture_output=True, text=True, timeout=60)


def test_version_and_help() -> None:
    version = run("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"kithnet {__version__}"
    help_text = run("--help")
    assert help_text.returncode == 0
    assert "micro-communities" in help_text.stdout
    assert "inspect-invite" in help_text.stdout
    assert run().stdout == help_text.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kithnet"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"kithnet {__version__}"


def test_inspect_record_prints_a_vector_and_refuses_a_forgery() -> None:
    vectors = [json.loads(line) for line in VECTORS.read_text().splitlines()]
    profile = next(v for v in vectors if v["name"] == "profile")
    shown = run("inspect-record", profile["envelope_hex"], "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["kind"] == "profile"
    assert data["fields"]["name"] == "Alice"
    assert data["id"] == profile["id_hex"]
    forged = next(v for v in vectors if v["name"] == "bad-signature")
    refused = run("inspect-record", forged["envelope_hex"])
    assert refused.returncode == 1
    assert "bad_signature" in refused.stderr


def test_inspect_invite_explains_a_typo() -> None:
    code = InviteCode.create(Identity.generate(), bytes(32), "Bakers", [], 4_000_000_000_000)
    text = code.encode()
    shown = run("inspect-invite", text)
    assert shown.returncode == 0
    assert "Bakers" in shown.stdout
    typo = text[:20] + ("a" if text[20] != "a" else "b") + text[21:]
    refused = run("inspect-invite", typo)
    assert refused.returncode == 1
    assert "mistyped" in refused.stderr
