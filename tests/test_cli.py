"""The installed `kithnet` command, run as a person would run it."""

from __future__ import annotations

import json
import os
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


def member(
    *args: str, passphrase: str | None = "first secret", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a member-facing command with the passphrase in the environment, as a script would."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KITHNET_")}
    if passphrase is not None:
        environment["KITHNET_PASSPHRASE"] = passphrase
    environment.update(env)
    return subprocess.run(
        [*KITHNET, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def test_init_id_passwd_backup_restore_as_a_member_would(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    created = member("init", "--name", "Alice Example", "--data-dir", str(home), "--json")
    assert created.returncode == 0, created.stderr
    me = json.loads(created.stdout)
    assert me["name"] == "Alice Example"
    assert me["peer_id"].startswith("12D3KooW")
    assert len(me["fingerprint"].split()) == 5
    assert len(bytes.fromhex(me["public_key"])) == 32

    shown = member("id", "--data-dir", str(home))
    assert shown.returncode == 0, shown.stderr
    assert me["fingerprint"] in shown.stdout
    assert me["peer_id"] in shown.stdout

    again = member("init", "--name", "Mallory", "--data-dir", str(home))
    assert again.returncode == 1
    assert "already holds a Kithnet store" in again.stderr

    wrong = member("id", "--data-dir", str(home), passphrase="not it")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == f"kithnet: wrong passphrase for {home}"

    backup = tmp_path / "alice.backup"
    saved = member("backup", str(backup), "--data-dir", str(home), "--json")
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout)["records"] == 1  # her profile

    new_file = tmp_path / "new-passphrase"
    new_file.write_text("second secret\n")
    changed = member("passwd", "--data-dir", str(home), "--new-passphrase-file", str(new_file))
    assert changed.returncode == 0, changed.stderr
    assert member("id", "--data-dir", str(home)).returncode == 1
    via_file = member("id", "--data-dir", str(home), "--passphrase-file", str(new_file), "--json")
    assert json.loads(via_file.stdout)["public_key"] == me["public_key"]

    elsewhere = tmp_path / "laptop"
    restored = member("restore", str(backup), "--data-dir", str(elsewhere), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["public_key"] == me["public_key"]
    assert json.loads(restored.stdout)["name"] == "Alice Example"


def test_member_commands_explain_what_is_missing(tmp_path: Path) -> None:
    nowhere = member("id", "--data-dir", str(tmp_path / "none"))
    assert nowhere.returncode == 1
    assert "there is no Kithnet store" in nowhere.stderr
    assert "kithnet init" in nowhere.stderr

    no_secret = member("init", "--name", "A", "--data-dir", str(tmp_path / "a"), passphrase=None)
    assert no_secret.returncode == 2
    assert "KITHNET_PASSPHRASE" in no_secret.stderr
    assert not (tmp_path / "a").exists()

    bad = tmp_path / "bad.backup"
    bad.write_bytes(b"KITHNET-BACKUP\n\x01\x00\x00")
    refused = member("restore", str(bad), "--data-dir", str(tmp_path / "r"))
    assert refused.returncode == 1
    assert "cut short" in refused.stderr
    assert not (tmp_path / "r").exists()

    needs_dir = member("restore", str(bad))
    assert needs_dir.returncode == 2
    assert "--data-dir" in needs_dir.stderr


def test_member_commands_refuse_wrong_places_in_words(tmp_path: Path) -> None:
    busy = tmp_path / "documents"
    busy.mkdir()
    (busy / "letter.txt").write_text("dear")
    crowded = member("init", "--name", "A", "--data-dir", str(busy))
    assert crowded.returncode == 1
    assert "is not empty" in crowded.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["letter.txt"]

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for args in (
        ("id", "--data-dir", str(a_file)),
        ("restore", str(tmp_path), "--data-dir", str(tmp_path / "new")),
        ("init", "--name", "x" * 80, "--data-dir", str(tmp_path / "long")),
    ):
        refused = member(*args)
        assert refused.returncode == 1, args
        assert refused.stderr.startswith("kithnet: "), refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / "long").exists()
    assert not (tmp_path / "new").exists()
