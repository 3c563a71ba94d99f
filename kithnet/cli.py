"""The `kithnet` command line."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kithnet import __version__
from kithnet.core.envelope import decode
from kithnet.core.errors import RecordError
from kithnet.core.validation import validate
from kithnet.crypto.errors import CryptoError
from kithnet.crypto.identity import fingerprint, peer_id
from kithnet.crypto.invite import InviteCodeError
from kithnet.crypto.invite import decode as decode_invite
from kithnet.localstore.backup import restore_backup, write_backup
from kithnet.localstore.errors import StoreError
from kithnet.localstore.store import Store, default_data_dir

PASSPHRASE_ENV = "KITHNET_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
NEW_PASSPHRASE_ENV = "KITHNET_NEW_PASSPHRASE"  # noqa: S105

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
    width = max((len(name) for name in data), default=0) + 2
    for name, value in data.items():
        print(f"{name + ':':<{width}}{_jsonable(value)}")


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


class UsageError(Exception):
    """The command was given something it cannot use; exit status 2."""


def _read_passphrase_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the passphrase file {path}: {exc.strerror}") from exc
    passphrase = text.rstrip("\r\n")
    if not passphrase:
        raise UsageError(f"the passphrase file {path} is empty")
    return passphrase


def _passphrase(
    args: argparse.Namespace, *, new: bool = False, confirm: bool = False, what: str = "Passphrase"
) -> str:
    """From --passphrase-file (--new-passphrase-file), then the environment, then a prompt."""
    file_option = args.new_passphrase_file if new else args.passphrase_file
    if file_option:
        return _read_passphrase_file(file_option)
    from_env = os.environ.get(NEW_PASSPHRASE_ENV if new else PASSPHRASE_ENV)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        option = "--new-passphrase-file" if new else "--passphrase-file"
        env = NEW_PASSPHRASE_ENV if new else PASSPHRASE_ENV
        raise UsageError(f"no passphrase: give {option} or set {env}, or run in a terminal")
    passphrase = getpass.getpass(f"{what}: ")
    if confirm and getpass.getpass(f"{what} again: ") != passphrase:
        raise UsageError("the two passphrases differ; nothing was changed")
    if not passphrase:
        raise UsageError("an empty passphrase protects nothing")
    return passphrase


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir) if args.data_dir else default_data_dir()


def _identity_view(store: Store) -> dict[str, Any]:
    identity = store.identity
    profile = store.profile()
    return {
        "name": profile.name,
        "public_key": identity.public_key,
        "peer_id": peer_id(identity.public_key),
        "fingerprint": fingerprint(identity.public_key),
        "data_dir": str(store.data_dir),
        "records": store.record_count(),
        "communities": len(store.communities()),
    }


def _cmd_init(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    passphrase = _passphrase(args, confirm=True, what="New passphrase")
    with Store.create(data_dir, passphrase, name=args.name) as store:
        _print(_identity_view(store), args.json)
    return 0


def _cmd_id(args: argparse.Namespace) -> int:
    with Store.open(_data_dir(args), _passphrase(args), readonly=True) as store:
        _print(_identity_view(store), args.json)
    return 0


def _cmd_passwd(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    with Store.open(data_dir, _passphrase(args, what="Current passphrase")) as store:
        store.change_passphrase(_passphrase(args, new=True, confirm=True, what="New passphrase"))
    _print({"data_dir": str(data_dir), "passphrase_changed": True}, args.json)
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    passphrase = _passphrase(args)
    with Store.open(_data_dir(args), passphrase, readonly=True) as store:
        count = write_backup(store, args.file, passphrase)
        public_key = store.identity.public_key
    _print(
        {"file": str(Path(args.file)), "records": count, "fingerprint": fingerprint(public_key)},
        args.json,
    )
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    with restore_backup(args.file, _passphrase(args), args.data_dir) as store:
        _print(_identity_view(store), args.json)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import trio

    from kithnet.node.daemon import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    with Store.open(_data_dir(args), _passphrase(args)) as store:
        trio.run(
            lambda: serve(
                store,
                args.listen or ["/ip4/0.0.0.0/tcp/4001"],
                args.peer,
                resync_interval=args.resync,
            )
        )
    return 0


def _store_options(parser: argparse.ArgumentParser, *, data_dir_required: bool = False) -> None:
    parser.add_argument(
        "--data-dir",
        required=data_dir_required,
        help="the folder holding the store"
        + ("" if data_dir_required else f" (default: {default_data_dir()})"),
    )
    parser.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help=f"read the passphrase from FILE (else ${PASSPHRASE_ENV}, else a prompt)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


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

    init = commands.add_parser(
        "init", help="create your identity and encrypted store, and print who you are"
    )
    init.add_argument("--name", required=True, help="the name other members see")
    _store_options(init)
    init.set_defaults(handler=_cmd_init)

    ident = commands.add_parser("id", help="print your public key, peer id and fingerprint")
    _store_options(ident)
    ident.set_defaults(handler=_cmd_id)

    passwd = commands.add_parser("passwd", help="change the passphrase of your store")
    _store_options(passwd)
    passwd.add_argument(
        "--new-passphrase-file",
        metavar="FILE",
        help=f"read the new passphrase from FILE (else ${NEW_PASSPHRASE_ENV}, else a prompt)",
    )
    passwd.set_defaults(handler=_cmd_passwd)

    backup = commands.add_parser(
        "backup", help="write your identity and all records to one encrypted file"
    )
    backup.add_argument("file", help="the backup file to write")
    _store_options(backup)
    backup.set_defaults(handler=_cmd_backup)

    restore = commands.add_parser(
        "restore", help="rebuild a store from a backup file, in a new data folder"
    )
    restore.add_argument("file", help="the backup file")
    _store_options(restore, data_dir_required=True)
    restore.set_defaults(handler=_cmd_restore)

    serve = commands.add_parser(
        "serve", help="run a node in the foreground until Ctrl-C, keeping communities reachable"
    )
    serve.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="where to listen (repeatable; default /ip4/0.0.0.0/tcp/4001)",
    )
    serve.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="a member to connect to, as /ip4/…/tcp/…/p2p/<peer id> (repeatable)",
    )
    serve.add_argument(
        "--resync", type=float, default=60, metavar="SECONDS", help="seconds between syncs"
    )
    _store_options(serve)
    serve.set_defaults(handler=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler = args.handler
    try:
        result: int = handler(args)
    except UsageError as exc:
        print(f"kithnet: {exc}", file=sys.stderr)
        return 2
    except (StoreError, RecordError, CryptoError) as exc:
        print(f"kithnet: {exc}", file=sys.stderr)
        return 1
    except EOFError:
        print("kithnet: no passphrase was typed; nothing was changed", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"kithnet: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kithnet: interrupted; nothing was changed", file=sys.stderr)
        return 130
    return result
