"""Field types of record bodies: each checks a decoded value and describes itself for the
spec. Limits on text are in UTF-8 bytes so every implementation counts them alike."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_TAG_BYTES = 48
# Most tags are plain ASCII; those that match this are canonical without normalising.
_ASCII_TAG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class FieldError(ValueError):
    """A field value breaks its type's rule; the message says which."""


@dataclass(frozen=True, slots=True)
class Text:
    """UTF-8 text of `min_bytes`..`max_bytes` bytes."""

    max_bytes: int
    min_bytes: int = 0

    def check(self, value: object) -> None:
        if not isinstance(value, str):
            raise FieldError("must be text")
        size = len(value.encode("utf-8"))
        if not self.min_bytes <= size <= self.max_bytes:
            raise FieldError(f"must be {self.min_bytes} to {self.max_bytes} bytes of text")

    def describe(self) -> str:
        low = f"{self.min_bytes}-" if self.min_bytes else "≤ "
        return f"str, {low}{self.max_bytes} bytes"


def normalise_tag(text: str) -> str:
    """The canonical form of a tag: NFKC, case-folded, words joined by '-'."""
    # NFKC and case folding do not always commute; a few rounds reach the fixed point.
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", text).casefold()
        words = "".join(c if c.isalnum() else " " for c in folded).split()
        normalised = "-".join(words)
        if normalised == text:
            break
        text = normalised
    return text


def is_tag(value: object) -> bool:
    """True if `value` is a tag already in canonical form."""
    if not isinstance(value, str) or not 0 < len(value.encode("utf-8")) <= MAX_TAG_BYTES:
        return False
    if value.isascii():
        return _ASCII_TAG.fullmatch(value) is not None
    return normalise_tag(value) == value


@dataclass(frozen=True, slots=True)
class Tag:
    """A skill, service, interest or place tag in canonical form (see `normalise_tag`)."""

    def check(self, value: object) -> None:
        if not is_tag(value):
            raise FieldError(
                f"must be a tag: 1 to {MAX_TAG_BYTES} bytes of lower-case letters and "
                "digits joined by single '-'"
            )

    def describe(self) -> str:
        return f"tag (lower-case letters/digits and '-', ≤ {MAX_TAG_BYTES} bytes)"


@dataclass(frozen=True, slots=True)
class Tags:
    """A list of distinct tags."""

    max_items: int
    min_items: int = 0

    def check(self, value: object) -> None:
        if not isinstance(value, list) or not self.min_items <= len(value) <= self.max_items:
            raise FieldError(f"must be a list of {self.min_items} to {self.max_items} tags")
        if not all(is_tag(item) for item in value):
            raise FieldError(f"must hold only tags ({Tag().describe()})")
        if len(set(value)) != len(value):
            raise FieldError("must not repeat a tag")

    def describe(self) -> str:
        return f"array of {self.min_items}-{self.max_items} distinct tags"


@dataclass(frozen=True, slots=True)
class Bin:
    """Binary data of exactly `size` bytes, or at most `max_bytes`."""

    size: int | None = None
    max_bytes: int | None = None
    meaning: str = ""

    def check(self, value: object) -> None:
        if not isinstance(value, bytes):
            raise FieldError("must be binary")
        if self.size is not None and len(value) != self.size:
            raise FieldError(f"must be {self.size} bytes")
        if self.max_bytes is not None and len(value) > self.max_bytes:
            raise FieldError(f"must be at most {self.max_bytes} bytes")

    def describe(self) -> str:
        size = f"{self.size} bytes" if self.size is not None else f"≤ {self.max_bytes} bytes"
        return f"bin, {size}" + (f" ({self.meaning})" if self.meaning else "")


def key(meaning: str = "member key") -> Bin:
    """A 32-byte Ed25519 public key."""
    return Bin(size=32, meaning=meaning)


def record_ref(meaning: str = "record id") -> Bin:
    """A 32-byte record id."""
    return Bin(size=32, meaning=meaning)


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def check(self, value: object) -> None:
        if value not in self.values:
            raise FieldError("must be one of " + ", ".join(repr(v) for v in self.values))

    def describe(self) -> str:
        return " \\| ".join(f'"{v}"' for v in self.values)


@dataclass(frozen=True, slots=True)
class UInt:
    """A non-negative integer up to `maximum`."""

    maximum: int = 2**63 - 1
    minimum: int = 0

    def check(self, value: object) -> None:
        if type(value) is not int or not self.minimum <= value <= self.maximum:
            raise FieldError(f"must be an integer from {self.minimum} to {self.maximum}")

    def describe(self) -> str:
        if self.maximum == 2**63 - 1:
            return f"int ≥ {self.minimum}"
        return f"int, {self.minimum}-{self.maximum}"


@dataclass(frozen=True, slots=True)
class Struct:
    """A map with its own required and optional fields (unknown keys are ignored)."""

    fields: tuple[tuple[str, FieldType, bool], ...]

    def check(self, value: object) -> None:
        if not isinstance(value, dict):
            raise FieldError("must be a map")
        for name, field_type, required in self.fields:
            if name not in value:
                if required:
                    raise FieldError(f"lacks {name!r}")
                continue
            try:
                field_type.check(value[name])
            except FieldError as exc:
                raise FieldError(f"{name!r} {exc}") from exc

    def describe(self) -> str:
        parts = [
            f"{name}{'' if required else '?'}: {field_type.describe()}"
            for name, field_type, required in self.fields
        ]
        return "map {" + "; ".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of up to `max_items` values of one type."""

    item: FieldType
    max_items: int
    min_items: int = 0

    def check(self, value: object) -> None:
        if not isinstance(value, list) or not self.min_items <= len(value) <= self.max_items:
            raise FieldError(f"must be a list of {self.min_items} to {self.max_items} items")
        for index, item in enumerate(value):
            try:
                self.item.check(item)
            except FieldError as exc:
                raise FieldError(f"item {index} {exc}") from exc

    def describe(self) -> str:
        return f"array of {self.min_items}-{self.max_items} × {self.item.describe()}"


FieldType = Text | Tag | Tags | Bin | Choice | UInt | Struct | ListOf


def check_field(field_type: FieldType, value: Any) -> None:
    """Check `value` against `field_type`; raises FieldError."""
    field_type.check(value)
