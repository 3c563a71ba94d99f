"""The `kithnet` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from kithnet import __version__
from kithnet.core.envelope import decode
from kithnet.core.errors import RecordError
from kithnet.core.validation import validate
from kithnet.crypto.identity import fingerprint, peer_id
from kithnet.crypto.invite import InviteCodeError
from kithnet.crypto.invite import decode as decode_invite

DESCRIPTION = """\
Kithnet: a peer-to-peer social network for micro-communities.

Members gather in small communities around interests, skills and services, vouch for
each other with signed references, and keep their data encrypted on their own machine.
"""


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(_jsonable(data), indent=2, ensure_ascii=False))
        return
    for name, value in data.items():
        print(f"{name + ':':<18}{_jsonable(value)}")


def _cmd_inspect_record(args: argparse.Namespace) -> int:
    text = args.envelope.strip()
    try:
        data = bytes.fromhex(text)
    except ValueError:
        print("kithnet: the record must be given as hexadecimal envelope bytes", file=sys.stderr)
        return 2
    try:
        record = decode(data)
        validate(record, _now_ms())
    except RecordError as exc:
        print(f"kithnet: record refused ({exc.reason}): {exc}", file=sys.stderr)
        return 1
    _print(
        {
            "id": record.id,
            "kind": record.kind,
            "author": record.author,
            "author_fingerprint": fingerprint(record.author),
            "fields": dict(record.fields),
        },
        args.json,
    )
    return 0


def _cmd_inspect_invite(args: argparse.Namespace) -> int:
    try:
        code = decode_invite(args.code)
        code.check_fresh(_now_ms())
    except InviteCodeError as exc:
        print(f"kithnet: {exc}", file=sys.stderr)
        return 1
    _print(
        {
            "community": code.community,
            "community_name": code.community_name,
            "inviter": code.inviter,
            "inviter_fingerprint": fingerprint(code.inviter),
            "inviter_peer_id": peer_id(code.inviter),
            "addresses": list(code.addresses),
            "expires_at": code.expires_at,
        },
        args.json,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kithnet",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kithnet {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    record = commands.add_parser(
        "inspect-record", help="check a signed record (hex envelope) and print its fields"
    )
    record.add_argument("envelope", help="the record envelope as hexadecimal")
    record.add_argument("--json", action="store_true", help="print JSON")
    record.set_defaults(handler=_cmd_inspect_record)

    invite = commands.add_parser(
        "inspect-invite", help="check an invite code and print what it carries"
    )
    invite.add_argument("code", help="the invite code (kith1...)")
    invite.add_argument("--json", action="store_true", help="print JSON")
    invite.set_defaults(handler=_cmd_inspect_invite)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler = args.handler
    result: int = handler(args)
    return result
