"""Hypothesis strategies for record fields, derived from the kind table itself, so that
every kind and every field type the spec names is exercised."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from kithnet.core.fields import (
    MAX_TAG_BYTES,
    Bin,
    Choice,
    FieldType,
    ListOf,
    Struct,
    Tag,
    Tags,
    Text,
    UInt,
    normalise_tag,
)
from kithnet.core.kinds import KINDS

NOW_MS = 1_764_000_000_000


def text_of(max_bytes: int, min_bytes: int = 0) -> st.SearchStrategy[str]:
    limit = min(max_bytes, 400)
    return st.text(min_size=max(min_bytes, 1) if min_bytes else 0, max_size=limit // 4).filter(
        lambda s: min_bytes <= len(s.encode()) <= max_bytes
    )


tags = (
    st.text(st.characters(categories=["Ll", "Lu", "Nd", "Zs", "Pd"]), min_size=1, max_size=20)
    .map(normalise_tag)
    .filter(lambda t: 0 < len(t.encode()) <= MAX_TAG_BYTES)
)


def for_type(field_type: FieldType) -> st.SearchStrategy[Any]:
    if isinstance(field_type, Text):
        return text_of(field_type.max_bytes, field_type.min_bytes)
    if isinstance(field_type, Tag):
        return tags
    if isinstance(field_type, Tags):
        return st.lists(
            tags, min_size=field_type.min_items, max_size=min(field_type.max_items, 5), unique=True
        )
    if isinstance(field_type, Bin):
        if field_type.size is not None:
            return st.binary(min_size=field_type.size, max_size=field_type.size)
        return st.binary(max_size=min(field_type.max_bytes or 64, 200))
    if isinstance(field_type, Choice):
        return st.sampled_from(field_type.values)
    if isinstance(field_type, UInt):
        return st.integers(field_type.minimum, field_type.maximum)
    if isinstance(field_type, Struct):
        required = {name: for_type(t) for name, t, req in field_type.fields if req}
        optional = {name: for_type(t) for name, t, req in field_type.fields if not req}
        return st.fixed_dictionaries(required, optional=optional)
    if isinstance(field_type, ListOf):
        return st.lists(
            for_type(field_type.item),
            min_size=field_type.min_items,
            max_size=min(field_type.max_items, 3),
        )
    raise AssertionError(f"no strategy for {field_type!r}")


def fields_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Field maps for `kind` that pass the kind's per-field checks (rules may still fail)."""
    spec = KINDS[kind]
    required: dict[str, st.SearchStrategy[Any]] = {
        f.name: for_type(f.type) for f in spec.fields if f.required
    }
    optional = {f.name: for_type(f.type) for f in spec.fields if not f.required}
    required["kind"] = st.just(kind)
    required["created_at"] = st.integers(1_704_067_200_000, NOW_MS)
    if spec.community == "required":
        required["community"] = st.binary(min_size=32, max_size=32)
    elif spec.community == "optional":
        optional["community"] = st.binary(min_size=32, max_size=32)
    return st.fixed_dictionaries(required, optional=optional)


def make_consistent(fields: dict[str, Any]) -> dict[str, Any]:
    """Adjust drawn fields so the kind's cross-field rules hold (they are tested apart)."""
    kind = fields["kind"]
    if kind == "post":
        if fields["type"] != "offer":
            fields.pop("area", None)
            fields.pop("terms", None)
        elif not fields.get("tags"):
            fields["tags"] = ["plumbing"]
        if not fields.get("text") and not fields.get("attachments"):
            fields["text"] = "hello"
    elif kind == "referral":
        if "to_community" in fields:
            fields.pop("to_member", None)
        else:
            fields.pop("invite", None)
            fields.setdefault("to_member", bytes([0xEE]) * 32)
    return fields
