"""Pictures and files between two members running `kithnet serve`, used through the
command line as a member would: attach, see it arrive in the feed, save it, set limits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.members import Member, wait_until


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    two = (Member(tmp_path, "Ann"), Member(tmp_path, "Bob"))
    try:
        yield two
    finally:
        for member in two:
            member.kill()


def test_a_picture_posted_on_the_command_line_arrives_and_is_saved(
    pair: tuple[Member, Member], tmp_path: Path
) -> None:
    ann, bob = pair
    for member in pair:
        member.start()
    community = ann.cli_json("community", "create", "Lofts")["id"]
    code = ann.cli_json("invite", "create", "lofts")["code"]
    assert bob.cli_json("join", code)["status"] == "joined"

    data = os.urandom(1024 * 1024 + 17)
    (tmp_path / "loft.png").write_bytes(data)
    posted = ann.cli_json("post", "lofts", "my loft", "--attach", str(tmp_path / "loft.png"))
    assert posted["attachments"][0]["state"] == "here"

    def arrived() -> bool:
        posts = bob.command("feed", community=community)["posts"]
        return bool(posts) and posts[0]["attachments"][0]["state"] == "here"

    wait_until(arrived, "Bob's node fetches the picture")
    shown = bob.cli("feed", "lofts")
    assert "[1] loft.png (1.0 MiB, image/png): here" in shown.stdout

    saved = bob.cli("attachment", "save", posted["id"], "1", str(tmp_path / "copy.png"))
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.startswith("saved loft.png (1.0 MiB) to ")
    assert (tmp_path / "copy.png").read_bytes() == data

    limits = bob.cli_json("blobs", "--max-size", "20MB", "--max-total", "2GB")
    assert (limits["max_size"], limits["max_total"]) == (20 * 2**20, 2 * 2**30)
    assert limits["count"] == 1
    assert "largest file fetched by itself: 20.0 MiB" in bob.cli("blobs").stdout

    # Too big for Ann's own limit: one clear line, nothing posted.
    ann.cli_json("blobs", "--max-size", "512KB")
    refused = ann.cli("post", "lofts", "--attach", str(tmp_path / "loft.png"), "--attach", "x")
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0
    assert refused.stderr.rstrip().endswith("/x: no such file")
    (tmp_path / "big.bin").write_bytes(os.urandom(600 * 1024))
    refused = ann.cli("post", "lofts", "--attach", str(tmp_path / "big.bin"))
    assert refused.returncode == 1
    assert refused.stderr.startswith("kithnet: big.bin cannot be attached: 0.6 MiB is over")
