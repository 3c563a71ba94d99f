"""The record kinds: for each, its fields, whether it belongs to a community and who may
author it. docs/protocol.md carries the table `markdown_table()` prints; a test keeps
them equal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kithnet.core.errors import ValidationError
from kithnet.core.fields import (
    Bin,
    Choice,
    FieldType,
    ListOf,
    Struct,
    Tag,
    Tags,
    Text,
    UInt,
    key,
    record_ref,
)

Placement = Literal["required", "absent", "optional"]
Rule = Callable[[Mapping[str, Any], bytes], None]

ROLES = ("owner", "moderator")
POST_TYPES = ("post", "question", "offer")
RELATIONSHIPS = ("hired", "worked_with", "knows_personally")
VISIBILITIES = ("public", "private")
MAX_INVITE_CODE_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType
    required: bool = True
    doc: str = ""


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What a record of one kind must carry and who may author it."""

    name: str
    summary: str
    community: Placement
    fields: tuple[Field, ...]
    authors: str
    rules: tuple[Rule, ...] = ()
    rules_doc: str = ""


def _not_self(field_name: str) -> Rule:
    def rule(fields: Mapping[str, Any], author: bytes) -> None:
        if fields.get(field_name) == author:
            raise ValidationError(
                f"the author cannot be the {field_name} of their own record", "self_reference"
            )

    return rule


def _offer_has_skills(fields: Mapping[str, Any], author: bytes) -> None:
    if fields.get("type") == "offer" and not fields.get("tags"):
        raise ValidationError("an offer must name at least one skill or service tag", "bad_field")
    if fields.get("type") != "offer" and ("area" in fields or "terms" in fields):
        raise ValidationError("only offers carry 'area' and 'terms'", "bad_field")


def _post_has_content(fields: Mapping[str, Any], author: bytes) -> None:
    if not fields.get("text") and not fields.get("attachments"):
        raise ValidationError("a post needs text or an attachment", "bad_field")


def _one_destination(fields: Mapping[str, Any], author: bytes) -> None:
    if ("to_community" in fields) == ("to_member" in fields):
        raise ValidationError(
            "a referral points to exactly one of 'to_community' or 'to_member'", "bad_field"
        )
    if "invite" in fields and "to_community" not in fields:
        raise ValidationError("only a referral to a community carries an invite", "bad_field")


def _public_only(fields: Mapping[str, Any], author: bytes) -> None:
    if fields.get("visibility") != "public":
        raise ValidationError("only public communities are announced", "bad_field")


ATTACHMENT = Struct(
    (
        ("hash", Bin(size=32, meaning="BLAKE2b-256 of the blob"), True),
        ("size", UInt(maximum=2**40), True),
        ("mime", Text(max_bytes=100, min_bytes=1), True),
        ("name", Text(max_bytes=200), False),
    )
)
SEALED_KEY = Struct(
    (
        ("member", key(), True),
        ("box", Bin(max_bytes=128, meaning="sealed 32-byte community key"), True),
    )
)

KINDS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            "profile",
            "who a member is; the newest profile of an author replaces older ones",
            "absent",
            (
                Field("name", Text(64, 1)),
                Field("bio", Text(2000), False),
                Field("skills", Tags(32), False, "what the member can do"),
                Field("services", Tags(32), False, "what the member offers to do for others"),
                Field("avatar", Bin(size=32, meaning="blob hash"), False),
            ),
            "anyone, about themselves",
        ),
        KindSpec(
            "community",
            "the genesis of a community; its record id is the community id",
            "absent",
            (
                Field("name", Text(80, 1)),
                Field("description", Text(2000), False),
                Field("tags", Tags(16), False, "interests, skills, services, a place"),
                Field("visibility", Choice(VISIBILITIES)),
            ),
            "anyone; the author is the community's first owner",
        ),
        KindSpec(
            "role_grant",
            "gives a member a role in a community",
            "required",
            (Field("subject", key()), Field("role", Choice(ROLES))),
            "owners",
        ),
        KindSpec(
            "role_revoke",
            "takes a role away",
            "required",
            (Field("subject", key()), Field("role", Choice(ROLES))),
            "owners (an owner may revoke their own role)",
        ),
        KindSpec(
            "invite",
            "publishes the public half of an invite code's secret",
            "required",
            (
                Field("invite_key", key("public key of the code's secret")),
                Field("expires_at", UInt(), doc="milliseconds since the epoch"),
                Field("max_uses", UInt(maximum=1_000_000, minimum=1), False, "absent: no limit"),
            ),
            "public community: any member; private: owners and moderators",
        ),
        KindSpec(
            "join",
            "a member joins with an invite; `proof` shows they held its secret",
            "required",
            (
                Field("invite_key", key("the invite's public key")),
                Field(
                    "proof",
                    Bin(size=64),
                    doc='Ed25519 by the invite secret over "kithnet/join/v1\\0" + community'
                    " + author",
                ),
            ),
            "anyone holding an invite code",
        ),
        KindSpec(
            "leave",
            "a member leaves a community",
            "required",
            (),
            "the member leaving",
        ),
        KindSpec(
            "post",
            "a post, a question or an offer, or a reply to one",
            "required",
            (
                Field("type", Choice(POST_TYPES)),
                Field("text", Text(16000), False),
                Field("tags", Tags(16), False, "skills the post is about"),
                Field("reply_to", record_ref("parent post"), False),
                Field("area", Text(200), False, "offers only: where the service is offered"),
                Field("terms", Text(1000), False, "offers only: price or conditions"),
                Field("attachments", ListOf(ATTACHMENT, 8), False),
            ),
            "members who are not banned",
            (_offer_has_skills, _post_has_content),
            "text or at least one attachment; an offer names at least one tag; only offers"
            " carry `area` and `terms`",
        ),
        KindSpec(
            "reaction",
            "an emoji reaction to a record; withdrawn by deleting it",
            "required",
            (Field("target", record_ref()), Field("emoji", Text(32, 1))),
            "members who are not banned",
        ),
        KindSpec(
            "edit",
            "replaces the text and tags of the author's own post",
            "required",
            (
                Field("target", record_ref("the post")),
                Field("text", Text(16000)),
                Field("tags", Tags(16), False),
            ),
            "the author of the target",
        ),
        KindSpec(
            "delete",
            "retracts the author's own post, reaction, invite or referral",
            "required",
            (Field("target", record_ref()),),
            "the author of the target",
        ),
        KindSpec(
            "reference",
            "the author vouches for the subject's skill",
            "optional",
            (
                Field("subject", key("the member vouched for")),
                Field("skill", Tag()),
                Field("text", Text(4000)),
                Field("relationship", Choice(RELATIONSHIPS)),
                Field("evidence", record_ref("an offer or job thread"), False),
            ),
            "anyone except the subject",
            (_not_self("subject"),),
            "`subject` is not the author",
        ),
        KindSpec(
            "reference_revoke",
            "withdraws a reference",
            "optional",
            (Field("target", record_ref("the reference")),),
            "the author of the reference",
        ),
        KindSpec(
            "reference_hide",
            "the subject hides a reference from their profile (it stays verifiable)",
            "optional",
            (Field("target", record_ref("the reference")),),
            "the subject of the reference",
        ),
        KindSpec(
            "moderation",
            "a moderator removes a record or bans or unbans a member",
            "required",
            (
                Field("action", Choice(("remove", "ban", "unban"))),
                Field("target", Bin(size=32, meaning="record id (remove) or member key (ban)")),
                Field("reason", Text(500), False),
            ),
            "owners and moderators; owners cannot be banned",
            (_not_self("target"),),
            "`target` is not the author",
        ),
        KindSpec(
            "referral",
            "answers a question by pointing it to a community or a member",
            "required",
            (
                Field("question", record_ref("the question post")),
                Field("to_community", Bin(size=32, meaning="community id"), False),
                Field("invite", Text(MAX_INVITE_CODE_CHARS), False, "an invite code to it"),
                Field("to_member", key(), False),
                Field("note", Text(1000), False),
            ),
            "members who are not banned",
            (_one_destination,),
            "exactly one of `to_community` and `to_member`; `invite` only with `to_community`",
        ),
        KindSpec(
            "announcement",
            "lists a public community in the directory",
            "required",
            (
                Field("name", Text(80, 1)),
                Field("description", Text(2000), False),
                Field("tags", Tags(16), False),
                Field("visibility", Choice(("public",))),
                Field("invite", Text(MAX_INVITE_CODE_CHARS), False, "a public invite code"),
                Field("members", UInt(), False, "approximate member count"),
            ),
            "owners",
            (_public_only,),
            "only public communities are announced",
        ),
        KindSpec(
            "key_update",
            "a private community's new content key, sealed to each remaining member",
            "required",
            (
                Field("epoch", UInt(), doc="increases by one at each rekey"),
                Field("keys", ListOf(SEALED_KEY, 400, 1), doc="several records for big ones"),
                Field(
                    "key_id",
                    Bin(size=32),
                    False,
                    'BLAKE2b-256 keyed with the key over "kithnet/key-id/1": which key it is',
                ),
            ),
            "owners and moderators",
        ),
        KindSpec(
            "dm",
            "a direct message, sealed to the recipient's key",
            "absent",
            (
                Field("recipient", key()),
                Field("box", Bin(max_bytes=60000, meaning="sealed box of the message")),
            ),
            "anyone except the recipient",
            (_not_self("recipient"),),
            "`recipient` is not the author",
        ),
    )
}


def markdown_table() -> str:
    """The kinds as the Markdown docs/protocol.md carries (kept equal by a test)."""
    lines: list[str] = []
    for spec in KINDS.values():
        lines.append(f"### `{spec.name}`")
        lines.append("")
        lines.append(f"{spec.summary[0].upper()}{spec.summary[1:]}.")
        lines.append(f"Community: {spec.community}. Authors: {spec.authors}.")
        if spec.rules_doc:
            lines.append(f"Rules: {spec.rules_doc}.")
        lines.append("")
        if spec.fields:
            lines.append("| field | type | required | meaning |")
            lines.append("|---|---|---|---|")
            for field in spec.fields:
                required = "yes" if field.required else "no"
                lines.append(
                    f"| `{field.name}` | {field.type.describe()} | {required} | {field.doc} |"
                )
            lines.append("")
    return "\n".join(lines)
