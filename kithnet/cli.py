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
from kithnet.localstore.errors import StoreError, StoreLocked
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
    current = _passphrase(args, what="Current passphrase")
    try:
        with Store.open(data_dir, current) as store:
            store.change_passphrase(
                _passphrase(args, new=True, confirm=True, what="New passphrase")
            )
    except StoreLocked:  # a running node holds the store: it changes the passphrase
        new = _passphrase(args, new=True, confirm=True, what="New passphrase")
        _call_node(data_dir, "passwd", {"current": current, "new": new})
    _print({"data_dir": str(data_dir), "passphrase_changed": True}, args.json)
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    passphrase = _passphrase(args)
    data_dir = _data_dir(args)
    file = str(Path(args.file).absolute())
    try:
        with Store.open(data_dir, passphrase, readonly=True) as store:
            count = write_backup(store, args.file, passphrase)
            public_key = store.identity.public_key
        result = {"file": file, "records": count, "fingerprint": fingerprint(public_key)}
    except StoreLocked:  # a running node holds the store: it writes the backup
        result = _call_node(data_dir, "backup", {"file": file, "passphrase": passphrase})
    _print(result, args.json)
    return 0


def _call_node(data_dir: Path, name: str, params: dict[str, Any]) -> Any:
    """A command run by the node that holds the store (the desktop app's, or `kithnet
    serve`)."""
    from kithnet.node.control import call

    return call(data_dir, name, params)


def _cmd_restore(args: argparse.Namespace) -> int:
    with restore_backup(args.file, _passphrase(args), args.data_dir) as store:
        _print(_identity_view(store), args.json)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import trio

    from kithnet.node.daemon import DEFAULT_LISTEN, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not args.verbose:
        # py-libp2p logs every failed dial and refused stream as an error; what the
        # member needs (peers, sync, problems) Kithnet logs itself.
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    with Store.open(_data_dir(args), _passphrase(args)) as store:
        trio.run(
            lambda: serve(
                store,
                args.listen or store.setting("listen") or list(DEFAULT_LISTEN),
                args.peer,
                resync_interval=args.resync,
                mdns=args.mdns,
                remember_listen=bool(args.listen),
                relay=args.relay,
                relay_via=args.relay_via,
            )
        )
    return 0


# Commands that act through a running node, or a node started for their duration.
# name on the control socket -> whether it needs the network when no node runs.
NODE_COMMANDS = {
    "community.create": False,
    "community.list": False,
    "invite.create": True,
    "join": True,
    "post": True,
    "feed": False,
    "peers": False,
    "status": False,
    "vouch": True,
    "references": False,
    "trust": False,
    "ask": True,
    "refer": True,
    "referrals": False,
    "profile.set": True,
    "community.roles": True,
    "community.ban": True,
    "community.leave": True,
    "community.announce": True,
    "directory": False,
    "directory.refresh": True,
    "community.invites": False,
    "community.invites.withdraw": True,
    "community.log": False,
    "community.remove": True,
    "react": True,
    "edit": True,
    "delete": True,
    "revoke": True,
    "hide": True,
    "mute": False,
    "thread": False,
    "blobs": False,
    "attachment.save": True,
    "dm": True,
    "inbox": False,
}


def _node_command(args: argparse.Namespace, name: str, params: dict[str, Any]) -> Any:
    """Run a command in the member's running node, or, if none runs, in a node started
    for this command alone."""
    from kithnet.node.control import NoNode, call

    data_dir = _data_dir(args)
    try:
        return call(data_dir, name, params)
    except NoNode:
        pass
    with Store.open(data_dir, _passphrase(args)) as store:
        if name in ("status", "peers"):
            return _offline_status(store, name)
        from kithnet.node.daemon import dispatch_locally

        return dispatch_locally(store, name, params, network=NODE_COMMANDS[name])


def _offline_status(store: Store, name: str) -> dict[str, Any]:
    known = store.known_peers(limit=1000)
    if name == "peers":
        return {
            "running": False,
            "connected": [],
            "known": len(known),
        }
    return {
        "running": False,
        "peer_id": store.peer_id,
        "records": store.record_count(),
        "communities": [{"id": c.id.hex(), "name": c.name} for c in store.communities()],
        "known_peers": len(known),
    }


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def _cmd_community_create(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "community.create",
        {
            "name": args.name,
            "description": args.description or "",
            "tags": args.tag,
            "private": args.private,
        },
    )
    if args.json:
        _print(result, True)
    else:
        print(f"created {result['name']} ({result['id']})")
    return 0


def _cmd_community_list(args: argparse.Namespace) -> int:
    result = _node_command(args, "community.list", {})
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    if not result:
        print("you are in no community yet: `kithnet community create` or `kithnet join`")
    for c in result:
        roles = f"  ({', '.join(c['roles'])})" if c["roles"] else ""
        print(
            f"{c['name']}  {c['id'][:12]}  {c['members']} members, {c['unread']} unread,"
            f" {c['peers_online']} online{roles}"
        )
    return 0


def _cmd_invite_create(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "invite.create",
        {"community": args.community, "uses": args.uses, "expires": args.expires},
    )
    if args.json:
        _print(result, True)
        return 0
    print(result["code"])
    uses = f"{result['uses']} uses" if result["uses"] else "any number of uses"
    print(
        f"invite to {result['community_name']}: {uses}, expires {_when(result['expires_at'])}",
        file=sys.stderr,
    )
    if not result["addresses"]:
        print(
            "kithnet: this invite names no address to reach the community: run "
            "`kithnet serve` so that newcomers can find your node",
            file=sys.stderr,
        )
    return 0


def _cmd_join(args: argparse.Namespace) -> int:
    result = _node_command(args, "join", {"code": args.code})
    if args.json:
        _print(result, True)
    elif result["status"] == "joined":
        print(f"joined {result['name']} ({result['records']} records so far)")
    elif result["status"] == "already a member":
        print(f"you are already in {result['name']}")
    else:
        print(f"asked to join {result['name']}; waiting: {result['detail']}")
    return 0


def _cmd_post(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "post",
        {
            "community": args.community,
            "text": args.text,
            "kind": args.kind,
            "skills": args.skill,
            "reply_to": args.reply_to,
            "area": args.area or "",
            "terms": args.terms or "",
            # The node reads the files: give it paths that do not depend on our folder.
            "attachments": [os.path.abspath(f) for f in args.attach],
        },
    )
    if args.json:
        _print(result, True)
    else:
        online = result["members_online"]
        where = (
            f"sent to {online} member{'s' if online != 1 else ''} online"
            if online
            else "no member is online now: it goes out when your node next connects"
        )
        print(f"posted {result['id']} to {result['community_name']}; {where}")
        for attachment in result.get("attachments", []):
            print(
                f"  attached {attachment['name'] or attachment['hash'][:12]}"
                f" ({_size(attachment['size'])}, {attachment['mime']})"
            )
    return 0


def _cmd_feed(args: argparse.Namespace) -> int:
    result = _node_command(args, "feed", {"community": args.community, "limit": args.limit})
    if args.json:
        _print(result, True)
        return 0
    if not result["posts"]:
        print(f"nothing in {result['name']} yet")
    for post in result["posts"]:
        label = {"post": "", "question": "[question] ", "offer": "[offer] "}[post["type"]]
        tags = f"  #{' #'.join(post['tags'])}" if post["tags"] else ""
        count = post["replies"]
        replies = f"  ({count} {'reply' if count == 1 else 'replies'})" if count else ""
        edited = " (edited)" if post["edited"] else ""
        print(f"{_when(post['created_at'])}  {post['author_name'] or post['author'][:12]}")
        print(f"  {label}{post['text']}{edited}{tags}{replies}")
        offered = [f"{k}: {post[k]}" for k in ("area", "terms") if post.get(k)]
        if offered:
            print(f"  {'; '.join(offered)}")
        for a in post.get("attachments", []):
            name = a["name"] or a["hash"][:12]
            print(f"  [{a['index']}] {name} ({_size(a['size'])}, {a['mime']}): {a['state']}")
        print(f"  id {post['id']}")
    return 0


def _cmd_peers(args: argparse.Namespace) -> int:
    result = _node_command(args, "peers", {})
    if args.json:
        _print(result, True)
        return 0
    if not result["running"]:
        print(f"no node is running ({result['known']} members' nodes known): `kithnet serve`")
        return 0
    if not result["connected"]:
        print(f"connected to nobody ({result['known']} members' nodes known)")
    for peer in result["connected"]:
        who = peer["name"] or "(not in your communities)"
        communities = ", ".join(peer["communities"]) or "-"
        print(f"{who}  {peer['peer_id']}  in: {communities}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    result = _node_command(args, "status", {})
    if args.json:
        _print(result, True)
        return 0
    if not result["running"]:
        print("no node is running: `kithnet serve` starts one")
        print(f"records: {result['records']}, known members' nodes: {result['known_peers']}")
        return 0
    print(f"peer id: {result['peer_id']}  (up {result['uptime_s']:.0f} s)")
    for address in result["listen"]:
        print(f"listening on {address}")
    print(f"connected peers: {result['peers']}, records: {result['records']}")
    for c in result["communities"]:
        syncing = f", syncing with {c['syncing']}" if c["syncing"] else ""
        last = f", last sync {_when(c['last_sync'])}" if c["last_sync"] else ""
        print(
            f"  {c['name']}: {c['peers']} peers, {c['records']} records,"
            f" {c['received_by_sync']} caught up{syncing}{last}"
        )
    if result["dropped"]:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(result["dropped"].items()))
        print(f"refused from the network: {dropped}")
    if result["banned"]:
        print(f"banned for misbehaving: {', '.join(result['banned'])}")
    relay = result["relay"]
    if relay["relaying_for_others"]:
        print(
            f"relaying for members behind NAT: {len(relay['reserved_members'])} reserved,"
            f" {relay['circuits']} circuits open"
        )
    for address in relay["circuit_addresses"]:
        print(f"reachable through a relay at {address}")
    if catching := result["catching_up"]:
        print(
            f"catching up {', '.join(catching['communities'])}: {catching['received']} of"
            f" {catching['wanted']} records received"
        )
    return 0


def _cmd_vouch(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "vouch",
        {
            "member": args.member,
            "skill": args.skill,
            "text": args.text,
            "relationship": args.relationship,
            "community": args.community,
        },
    )
    if args.json:
        _print(result, True)
    else:
        print(f"vouched for {args.member}'s {result['skill']} in {result['community_name']}")
    return 0


def _cmd_references(args: argparse.Namespace) -> int:
    result = _node_command(args, "references", {"member": args.member})
    if args.json:
        _print(result, True)
        return 0
    if not result["references"]:
        print(f"no references about {result['name'] or args.member} are known here")
    for ref in result["references"]:
        flags = [] if ref["verified"] else ["SIGNATURE DOES NOT CHECK"]
        flags += ["revoked"] if ref["revoked"] else []
        flags += ["hidden by them"] if ref["hidden"] else []
        extra = f" ({', '.join(flags)})" if flags else ""
        where = f" in {ref['community_name']}" if ref["community_name"] else ""
        print(f"{ref['skill']}: {ref['author_name'] or ref['author'][:12]}{where}{extra}")
        print(f"  {ref['relationship'].replace('_', ' ')}: {ref['text']}")
    return 0


def _cmd_trust(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "trust",
        {"member": args.member, "skill": args.skill, "add": args.add, "remove": args.remove},
    )
    if args.json:
        _print(result, True)
        return 0
    who = result["name"] or args.member
    path = " → ".join(result["path"]) if result["path"] else "nobody you trust"
    print(f"your trust in {who}: {result['trust']:.2f} (through {path})")
    if args.skill:
        rank = f"#{result['rank']} of {result['of']}" if result.get("rank") else "unranked"
        print(f"{args.skill}: {rank}; {result['explanation']}")
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    result = _node_command(
        args, "ask", {"text": args.text, "skills": args.skill, "community": args.community}
    )
    if args.json:
        _print(result, True)
        return 0
    print(f"asked in {result['community_name']} ({result['question']})")
    if not result["providers"] and not result["communities"]:
        print("nobody and no community your node knows of matches yet; answers will come")
    for number, provider in enumerate(result["providers"], 1):
        print(f"{number}. {provider['name'] or provider['member'][:12]}")
        for reason in provider["reasons"]:
            print(f"   {reason}")
    for community in result["communities"]:
        print(f"community: {community['name']} ({community['reason']})")
    return 0


def _cmd_refer(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "refer",
        {
            "question": args.question,
            "community": args.community,
            "member": args.member,
            "note": args.note or "",
        },
    )
    if args.json:
        _print(result, True)
    else:
        print(f"referred the question to {result['to']}")
    return 0


def _cmd_referrals(args: argparse.Namespace) -> int:
    result = _node_command(args, "referrals", {"question": args.question})
    if args.json:
        _print(result, True)
        return 0
    if not result["referrals"]:
        print("no referrals yet")
    for referral in result["referrals"]:
        to = referral["community_name"] or referral["member_name"] or "?"
        trust = f"trust {referral['trust']:.2f}" if referral["trust"] else "not someone you trust"
        print(f"{referral['by']} ({trust}) points you to {to}")
        if referral["invite"]:
            print(f"  join: kithnet join {referral['invite']}")
        if referral["note"]:
            print(f"  {referral['note']}")
    return 0


def _cmd_profile_set(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "profile.set",
        {"name": args.name, "bio": args.bio, "skills": args.skill, "services": args.service},
    )
    if args.json:
        _print(result, True)
    else:
        skills = ", ".join(result["skills"]) or "none"
        print(f"your profile: {result['name']}; skills: {skills}")
    return 0


def _cmd_community_roles(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "community.roles",
        {
            "community": args.community,
            "grant": args.grant,
            "revoke": args.revoke,
            "role": args.role,
        },
    )
    if args.json:
        _print(result, True)
        return 0
    for member in result["members"]:
        roles = f" ({', '.join(member['roles'])})" if member["roles"] else ""
        flags = (" online" if member["online"] else "") + (" BANNED" if member["banned"] else "")
        print(f"{member['name'] or member['member'][:12]}{roles}{flags}")
    return 0


def _cmd_community_ban(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "community.ban",
        {
            "community": args.community,
            "member": args.member,
            "reason": args.reason or "",
            "unban": args.unban,
        },
    )
    if args.json:
        _print(result, True)
    else:
        print(f"{result['action']}ned {args.member} in {result['community_name']}")
        if result.get("key_epoch") is not None:
            print(
                f"the other members moved to a new key (epoch {result['key_epoch']}); "
                f"{args.member} cannot read what is posted from now on"
            )
        for note in result.get("notes", []):
            print(note)
    return 0


def _cmd_community_leave(args: argparse.Namespace) -> int:
    result = _node_command(args, "community.leave", {"community": args.community})
    if args.json:
        _print(result, True)
    else:
        print(f"you left {result['community_name']}")
    return 0


def _cmd_community_invites(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "community.invites.withdraw" if args.withdraw else "community.invites",
        {"community": args.community, "withdraw": args.withdraw},
    )
    if args.json:
        _print(result, True)
        return 0
    if args.withdraw:
        print(f"withdrew invite {args.withdraw}")
    if not result["invites"]:
        print(f"{result['name']} has no invites")
    for i in result["invites"]:
        limit = f"/{i['max_uses']}" if i["max_uses"] is not None else ""
        print(
            f"{i['id'][:12]}  {i['state']:<9} {i['uses']}{limit} uses  expires"
            f" {_when(i['expires_at'])}  by {i['issuer_name'] or i['issuer'][:12]}"
        )
    return 0


def _cmd_community_log(args: argparse.Namespace) -> int:
    result = _node_command(args, "community.log", {"community": args.community})
    if args.json:
        _print(result, True)
        return 0
    if not result["entries"]:
        print(f"nothing has been moderated in {result['name']}")
    for e in result["entries"]:
        target = e["target_name"] or e["target"][:12]
        reason = f": {e['reason']}" if e["reason"] else ""
        who = e["moderator_name"] or e["moderator"][:12]
        print(f"{_when(e['created_at'])}  {who} {e['action']} {target}{reason}")
    return 0


def _cmd_community_remove(args: argparse.Namespace) -> int:
    result = _node_command(
        args, "community.remove", {"record": args.record, "reason": args.reason or ""}
    )
    if args.json:
        _print(result, True)
    else:
        print(f"removed {result['target'][:12]} from {result['community_name']}")
    return 0


def _simple(command: str, keys: tuple[str, ...], done: str) -> Any:
    """A handler that sends `keys` of the parsed arguments and prints `done`."""

    def handler(args: argparse.Namespace) -> int:
        result = _node_command(args, command, {k: getattr(args, k) for k in keys})
        if args.json:
            _print(result, True)
        else:
            print(done.format(**result))
        return 0

    return handler


def _cmd_thread(args: argparse.Namespace) -> int:
    result = _node_command(args, "thread", {"post": args.post})
    if args.json:
        _print(result, True)
        return 0
    for post in result["posts"]:
        indent = "  " * post["depth"]
        label = {"post": "", "question": "[question] ", "offer": "[offer] "}[post["type"]]
        edited = " (edited)" if post["edited"] else ""
        who = post["author_name"] or post["author"][:12]
        print(f"{indent}{_when(post['created_at'])}  {who}  id {post['id'][:12]}")
        print(f"{indent}  {label}{post['text']}{edited}")
    return 0


def _cmd_mute(args: argparse.Namespace) -> int:
    result = _node_command(
        args, "mute", {"member": args.member, "block": args.block, "undo": args.undo}
    )
    if args.json:
        _print(result, True)
        return 0
    if args.member:
        what = "unmuted" if args.undo else "blocked" if args.block else "muted"
        print(f"{what} {args.member}")
    elif not result["silenced"]:
        print("you have muted or blocked nobody")
    for entry in result["silenced"] if not args.member else []:
        print(f"{entry['level']:<5} {entry['name'] or entry['member'][:12]}")
    return 0


def _cmd_community_announce(args: argparse.Namespace) -> int:
    result = _node_command(
        args,
        "community.announce",
        {"community": args.community, "uses": args.uses, "expires": args.expires},
    )
    if args.json:
        _print(result, True)
        return 0
    print(
        f"listed {result['name']} in the directory ({result['members']} members); "
        f"its invite expires {_when(result['invite_expires_at'])}"
    )
    print(result["invite"])
    return 0


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def _cmd_directory(args: argparse.Namespace) -> int:
    name = "directory.refresh" if args.refresh else "directory"
    params = {"text": " ".join(args.text), "tag": args.tag or "", "refresh": args.refresh}
    result = _node_command(args, name, params)
    if args.json:
        _print(result, True)
        return 0
    refreshed = result["refreshed"]
    if refreshed is not None:
        print(
            f"asked {refreshed['asked']} nodes, {refreshed['answered']} answered, "
            f"{refreshed['new']} new listings",
            file=sys.stderr,
        )
    if not result["entries"]:
        print(
            f"no community in your directory matches ({result['total']} listed); "
            "`kithnet directory --refresh` asks other nodes for theirs"
        )
    for entry in result["entries"]:
        members = f"~{entry['members']} members" if entry["members"] is not None else "size unknown"
        tags = ", ".join(entry["tags"]) or "no tags"
        joined = "  (you are in it)" if entry["joined"] else ""
        print(f"{entry['name']}  [{tags}]  {members}, announced {_age(entry['age_s'])}{joined}")
        if entry["description"]:
            print(f"  {entry['description']}")
        if entry["invite_expired"]:
            print("  its invite has expired: wait for the owners to announce it again")
        else:
            print(f"  join: kithnet join {entry['invite']}")
    return 0


# Pictures and files on posts --------------------------------------------------------


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    if size < 1024**3:
        return f"{size / 1024**2:.1f} MiB"
    return f"{size / 1024**3:.2f} GiB"


def _cmd_blobs(args: argparse.Namespace) -> int:
    result = _node_command(args, "blobs", {"max_size": args.max_size, "max_total": args.max_total})
    if args.json:
        _print(result, True)
        return 0
    print(f"largest file fetched by itself: {_size(result['max_size'])}")
    print(f"room for files: {_size(result['max_total'])}")
    print(f"in use: {_size(result['used'])} in {result['count']} files")
    return 0


def _cmd_attachment_save(args: argparse.Namespace) -> int:
    if len(args.where) == 1:
        index, file = 1, args.where[0]
    elif len(args.where) == 2 and args.where[0].isdigit():
        index, file = int(args.where[0]), args.where[1]
    else:
        raise UsageError("attachment save takes POST_ID [INDEX] FILE")
    result = _node_command(
        args,
        "attachment.save",
        {"post": args.post, "index": index, "file": os.path.abspath(file)},
    )
    if args.json:
        _print(result, True)
    else:
        print(
            f"saved {result['name'] or 'attachment'} ({_size(result['size'])}) to {result['file']}"
        )
    return 0


def _blob_parsers(commands: Any) -> None:
    blobs = commands.add_parser("blobs", help="limits on pictures and files, and how much they use")
    blobs.add_argument(
        "--max-size", metavar="SIZE", help="largest file fetched by itself, e.g. 20MB"
    )
    blobs.add_argument("--max-total", metavar="SIZE", help="room for all files, e.g. 2GB")
    _store_options(blobs)
    blobs.set_defaults(handler=_cmd_blobs)

    attachment = commands.add_parser("attachment", help="a post's pictures and files")
    actions = attachment.add_subparsers(dest="action", metavar="ACTION", required=True)
    save = actions.add_parser("save", help="write an attachment to a file (fetching it)")
    save.add_argument("post", metavar="POST_ID", help="the post's id")
    save.add_argument("where", nargs="+", metavar="[INDEX] FILE", help="which (from 1), where")
    _store_options(save)
    save.set_defaults(handler=_cmd_attachment_save)


def _cmd_dm(args: argparse.Namespace) -> int:
    result = _node_command(args, "dm", {"member": args.member, "text": args.text})
    if args.json:
        _print(result, True)
        return 0
    who = result["name"] or result["member"][:12]
    if result["status"] == "delivered":
        print(f"sent to {who}: delivered to their node")
    elif result["status"] == "forwarded":
        count = result["forwarders"]
        print(
            f"sent to {who}: their node is not online, so {count} member"
            f"{'s' if count != 1 else ''} you share a community with hold it, sealed, "
            "until it is"
        )
    else:
        print(
            f"saved for {who}: neither their node nor a member who could pass it on is "
            "online; it goes out when your node next meets one (keep `kithnet serve` running)"
        )
    return 0


def _cmd_inbox(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"member": args.member, "limit": args.limit}
    result = _node_command(args, "inbox", params)
    if args.json:
        _print(result, True)
        return 0
    if args.member is None:
        if not result["conversations"]:
            print("no messages yet")
        for c in result["conversations"]:
            last = c["last"]
            unread = f"  {c['unread']} unread" if c["unread"] else ""
            prefix = "you: " if last["direction"] == "out" else ""
            print(f"{_when(last['created_at'])}  {c['name'] or c['member'][:12]}{unread}")
            print(f"  {prefix}{last['text']}")
        return 0
    who = result["name"] or result["member"][:12]
    if not result["messages"]:
        print(f"no messages with {who} yet")
    for m in result["messages"]:
        if m["direction"] == "in":
            print(f"{_when(m['created_at'])}  {who}{'  (new)' if m['state'] == 'unread' else ''}")
        else:
            state = {
                "waiting": "waiting to be sent",
                "forwarded": f"held for them by {m['forwarders']}",
                "delivered": "delivered",
            }[m["state"]]
            print(f"{_when(m['created_at'])}  you ({state})")
        print(f"  {m['text']}")
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
    parser.add_argument(
        "--demo",
        action="store_true",
        help="open the desktop app on a demo: you and three local peers, thrown away after",
    )
    parser.add_argument(
        "--data-dir",
        dest="app_data_dir",
        metavar="DATA_DIR",
        help="with no command: open the desktop app on this folder's store",
    )
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
        help="where to listen (repeatable; default TCP and QUIC on port 4001 of every"
        " interface: /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1)",
    )
    serve.add_argument(
        "--mdns", action="store_true", help="also find members on the local network (mDNS)"
    )
    serve.add_argument(
        "--verbose", action="store_true", help="also log what the libp2p library reports"
    )
    serve.add_argument(
        "--relay",
        action="store_true",
        help="relay connections for members behind NAT (for a node others can reach)",
    )
    serve.add_argument(
        "--relay-via",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="be reachable through this relaying member's node (when behind NAT; repeatable)",
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

    community = commands.add_parser("community", help="create and list communities")
    community_commands = community.add_subparsers(
        title="community commands", dest="community_command", metavar="COMMAND", required=True
    )
    create = community_commands.add_parser("create", help="start a new community")
    create.add_argument("name", help="its name")
    create.add_argument("--description", metavar="TEXT", help="what it is for")
    create.add_argument(
        "--tag", action="append", default=[], metavar="TAG", help="a topic, skill or place"
    )
    create.add_argument("--private", action="store_true", help="a private community")
    _store_options(create)
    create.set_defaults(handler=_cmd_community_create)
    roles = community_commands.add_parser(
        "roles", help="members and their roles; owners grant and revoke them"
    )
    roles.add_argument("community", help="the community's name or id")
    change = roles.add_mutually_exclusive_group()
    change.add_argument("--grant", metavar="MEMBER", help="give MEMBER the role")
    change.add_argument("--revoke", metavar="MEMBER", help="take the role from MEMBER")
    roles.add_argument("--role", choices=("owner", "moderator"), default="moderator")
    _store_options(roles)
    roles.set_defaults(handler=_cmd_community_roles)
    ban = community_commands.add_parser("ban", help="ban a member (moderators)")
    ban.add_argument("community", help="the community's name or id")
    ban.add_argument("member", help="their name, public key or peer id")
    ban.add_argument("--reason", help="why, for the moderation log")
    ban.add_argument("--unban", action="store_true", help="lift a ban instead")
    _store_options(ban)
    ban.set_defaults(handler=_cmd_community_ban)
    leave = community_commands.add_parser("leave", help="leave a community")
    leave.add_argument("community", help="the community's name or id")
    _store_options(leave)
    leave.set_defaults(handler=_cmd_community_leave)
    announce = community_commands.add_parser(
        "announce", help="list a public community you own in the directory"
    )
    announce.add_argument("community", help="the community's name or id")
    announce.add_argument("--uses", type=int, metavar="N", help="how many may join with its invite")
    announce.add_argument(
        "--expires", default="30d", metavar="DURATION", help="the invite's life (default 30d)"
    )
    _store_options(announce)
    announce.set_defaults(handler=_cmd_community_announce)
    listing = community_commands.add_parser("list", help="the communities you are in")
    _store_options(listing)
    listing.set_defaults(handler=_cmd_community_list)
    invites = community_commands.add_parser(
        "invites", help="a community's invites and their uses; withdraw one of yours"
    )
    invites.add_argument("community", help="the community's name or id")
    invites.add_argument("--withdraw", metavar="INVITE", help="withdraw this invite (its id)")
    _store_options(invites)
    invites.set_defaults(handler=_cmd_community_invites)
    log_parser = community_commands.add_parser("log", help="the moderation log")
    log_parser.add_argument("community", help="the community's name or id")
    _store_options(log_parser)
    log_parser.set_defaults(handler=_cmd_community_log)
    remove = community_commands.add_parser(
        "remove", help="remove a post or other record (moderators)"
    )
    remove.add_argument("record", help="the record's id (or its first 8+ hex digits)")
    remove.add_argument("--reason", help="why, for the moderation log")
    _store_options(remove)
    remove.set_defaults(handler=_cmd_community_remove)

    invite_group = commands.add_parser("invite", help="invite people to a community")
    invite_commands = invite_group.add_subparsers(
        title="invite commands", dest="invite_command", metavar="COMMAND", required=True
    )
    invite_create = invite_commands.add_parser("create", help="make an invite code")
    invite_create.add_argument("community", help="the community's name or id")
    invite_create.add_argument("--uses", type=int, metavar="N", help="how many may join with it")
    invite_create.add_argument(
        "--expires", default="7d", metavar="DURATION", help="e.g. 30m, 12h, 7d, 2w (default 7d)"
    )
    _store_options(invite_create)
    invite_create.set_defaults(handler=_cmd_invite_create)

    join = commands.add_parser("join", help="join a community with an invite code")
    join.add_argument("code", help="the invite code (kith1...)")
    _store_options(join)
    join.set_defaults(handler=_cmd_join)

    post = commands.add_parser("post", help="write a post, a question or an offer")
    post.add_argument("community", help="the community's name or id")
    post.add_argument("text", nargs="?", default="", help="what to say")
    post.add_argument("--kind", choices=("post", "question", "offer"), default="post")
    post.add_argument(
        "--skill", action="append", default=[], metavar="SKILL", help="a skill it is about"
    )
    post.add_argument("--reply-to", metavar="ID", help="the post this answers")
    post.add_argument("--area", help="offers: where you offer it (a town, a district)")
    post.add_argument("--terms", help="offers: price or conditions")
    post.add_argument(
        "--attach", action="append", default=[], metavar="FILE", help="attach a file (up to 8)"
    )
    _store_options(post)
    post.set_defaults(handler=_cmd_post)

    feed = commands.add_parser("feed", help="the newest posts of a community")
    feed.add_argument("community", help="the community's name or id")
    feed.add_argument("--limit", type=int, default=20, metavar="N")
    _store_options(feed)
    feed.set_defaults(handler=_cmd_feed)

    _blob_parsers(commands)

    peers = commands.add_parser("peers", help="the members' nodes you are connected to")
    _store_options(peers)
    peers.set_defaults(handler=_cmd_peers)

    vouch = commands.add_parser("vouch", help="vouch for a member's skill (a signed reference)")
    vouch.add_argument("member", help="their name, public key or peer id")
    vouch.add_argument("--skill", required=True, help="the skill you vouch for")
    vouch.add_argument("--text", required=True, help="what you can say about their work")
    vouch.add_argument(
        "--relationship",
        choices=("hired", "worked_with", "knows_personally"),
        default="worked_with",
    )
    vouch.add_argument("--community", help="where it travels (default: one you share)")
    _store_options(vouch)
    vouch.set_defaults(handler=_cmd_vouch)

    references = commands.add_parser("references", help="the references about a member")
    references.add_argument("member", help="their name, public key or peer id")
    _store_options(references)
    references.set_defaults(handler=_cmd_references)

    trust = commands.add_parser("trust", help="how much you trust a member, and why")
    trust.add_argument("member", help="their name, public key or peer id")
    trust.add_argument("--skill", help="also: how they rank for this skill, and why")
    seed = trust.add_mutually_exclusive_group()
    seed.add_argument(
        "--add", action="store_true", help="trust them yourself, as if you had vouched for them"
    )
    seed.add_argument("--remove", action="store_true", help="undo --add")
    _store_options(trust)
    trust.set_defaults(handler=_cmd_trust)

    ask = commands.add_parser(
        "ask", help="does anybody know...? ask, and see at once who and where could help"
    )
    ask.add_argument("text", help="the question")
    ask.add_argument(
        "--skill", action="append", default=[], metavar="SKILL", help="a skill it needs"
    )
    ask.add_argument("--community", help="where to ask (default: the best matching one)")
    _store_options(ask)
    ask.set_defaults(handler=_cmd_ask)

    refer = commands.add_parser(
        "refer", help="answer a question by pointing it to a community or a member"
    )
    refer.add_argument("question", help="the question's id")
    target = refer.add_mutually_exclusive_group(required=True)
    target.add_argument("--community", help="a community (an invite to it goes along)")
    target.add_argument("--member", help="a member (name, public key or peer id)")
    refer.add_argument("--note", help="a word for the asker")
    _store_options(refer)
    refer.set_defaults(handler=_cmd_refer)

    referrals = commands.add_parser(
        "referrals", help="the referrals your question received, the most trusted first"
    )
    referrals.add_argument("question", help="the question's id")
    _store_options(referrals)
    referrals.set_defaults(handler=_cmd_referrals)

    profile = commands.add_parser("profile", help="what other members see of you")
    profile_commands = profile.add_subparsers(
        title="profile commands", dest="profile_command", metavar="COMMAND", required=True
    )
    profile_set = profile_commands.add_parser(
        "set", help="change your name, bio, skills or services (the rest stays)"
    )
    profile_set.add_argument("--name")
    profile_set.add_argument("--bio")
    profile_set.add_argument(
        "--skill", action="append", metavar="SKILL", help="what you can do (repeatable)"
    )
    profile_set.add_argument(
        "--service", action="append", metavar="SERVICE", help="what you offer (repeatable)"
    )
    _store_options(profile_set)
    profile_set.set_defaults(handler=_cmd_profile_set)

    directory = commands.add_parser(
        "directory", help="find public communities you are not in yet (searched locally)"
    )
    directory.add_argument("text", nargs="*", help="words in the name, description or tags")
    directory.add_argument("--tag", metavar="TAG", help="only communities with this tag")
    directory.add_argument(
        "--refresh", action="store_true", help="first ask other nodes for their directory"
    )
    _store_options(directory)
    directory.set_defaults(handler=_cmd_directory)

    thread = commands.add_parser("thread", help="a post and the replies to it")
    thread.add_argument("post", help="the post's id (or its first 8+ hex digits)")
    _store_options(thread)
    thread.set_defaults(handler=_cmd_thread)
    react = commands.add_parser("react", help="react to a post with an emoji")
    react.add_argument("post", help="the post's id (or its first 8+ hex digits)")
    react.add_argument("emoji")
    react.add_argument("--undo", action="store_true", help="withdraw your reaction")
    _store_options(react)
    react.set_defaults(handler=_simple("react", ("post", "emoji", "undo"), "done: {id}"))
    edit = commands.add_parser("edit", help="change the text of your own post")
    edit.add_argument("post", help="the post's id (or its first 8+ hex digits)")
    edit.add_argument("text", help="the new text")
    edit.add_argument("--skill", action="append", dest="skills", metavar="SKILL")
    _store_options(edit)
    edit.set_defaults(handler=_simple("edit", ("post", "text", "skills"), "edited {target}"))
    delete = commands.add_parser(
        "delete", help="delete your own post, reaction, invite or referral"
    )
    delete.add_argument("record", help="its id (or its first 8+ hex digits)")
    _store_options(delete)
    delete.set_defaults(handler=_simple("delete", ("record",), "deleted {target}"))
    revoke = commands.add_parser("revoke", help="withdraw a reference you wrote")
    revoke.add_argument("reference", help="the reference's id (or its first 8+ hex digits)")
    _store_options(revoke)
    revoke.set_defaults(handler=_simple("revoke", ("reference",), "revoked {target}"))
    hide = commands.add_parser("hide", help="hide a reference about you from your profile")
    hide.add_argument("reference", help="the reference's id (or its first 8+ hex digits)")
    _store_options(hide)
    hide.set_defaults(handler=_simple("hide", ("reference",), "hid {target}"))
    mute = commands.add_parser(
        "mute", help="mute or block a member for yourself; with no member, list them"
    )
    mute.add_argument("member", nargs="?", help="their name, public key or peer id")
    mute.add_argument(
        "--block", action="store_true", help="also ignore their references and messages"
    )
    mute.add_argument("--undo", action="store_true", help="lift the mute or block")
    _store_options(mute)
    mute.set_defaults(handler=_cmd_mute)

    dm = commands.add_parser("dm", help="send a member an end-to-end encrypted message")
    dm.add_argument("member", help="the member (name, public key or peer id)")
    dm.add_argument("text", help="what to say")
    _store_options(dm)
    dm.set_defaults(handler=_cmd_dm)

    inbox = commands.add_parser("inbox", help="your direct messages, or one conversation")
    inbox.add_argument("member", nargs="?", help="show (and mark read) this conversation")
    inbox.add_argument("--limit", type=int, default=50, metavar="N")
    _store_options(inbox)
    inbox.set_defaults(handler=_cmd_inbox)

    status = commands.add_parser("status", help="your node: addresses, peers, sync")
    _store_options(status)
    status.set_defaults(handler=_cmd_status)
    return parser


# What others wrote (posts, names, messages) is printed as text: control characters
# in it, terminal escape sequences above all, are shown as "?" instead of obeyed.
_UNPRINTABLE = {c: "?" for c in [*range(0, 9), *range(11, 32), 127, *range(128, 160)]}


class _PrintableOutput:
    """A text stream that writes control characters (but newline and tab) as "?"."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return int(self._stream.write(text.translate(_UNPRINTABLE)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _has_display() -> bool:
    """Whether a window can open here (Qt aborts the process when it cannot)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform == "offscreen":  # tests and headless runs: nobody would see a window
        return False
    if sys.platform in ("darwin", "win32") or platform:
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not isinstance(sys.stdout, _PrintableOutput):
        sys.stdout = _PrintableOutput(sys.stdout)
    if args.demo:
        if not _has_display():
            print(
                "kithnet: the demo is the desktop app, and there is no display here",
                file=sys.stderr,
            )
            return 1
        from kithnet.gui.app import demo_main

        return demo_main()
    if args.command is None:
        if not _has_display():
            parser.print_help()
            print("(no display: the desktop app needs one; the commands do not)", file=sys.stderr)
            return 0
        from kithnet.gui.app import main as app_main  # Qt only when the app opens
        from kithnet.node.daemon import DEFAULT_LISTEN

        data_dir = Path(args.app_data_dir) if args.app_data_dir else default_data_dir()
        return app_main(data_dir, list(DEFAULT_LISTEN))
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
    except Exception as exc:
        from kithnet.node.commands import CommandError
        from kithnet.node.control import ControlError
        from kithnet.p2p.host import P2PError

        if not isinstance(exc, (CommandError, ControlError, P2PError)):
            raise
        print(f"kithnet: {exc}", file=sys.stderr)
        return 1
    return result
