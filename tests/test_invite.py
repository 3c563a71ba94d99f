"""Invite codes as a person meets them: pasted, retyped, scanned, expired, forged."""

from __future__ import annotations

import base64
import hashlib

import msgpack
import pytest
import zxingcpp
from hypothesis import given
from hypothesis import strategies as st
from PySide6.QtGui import QImage

from kithnet.crypto import invite
from kithnet.crypto.errors import BadSignature
from kithnet.crypto.identity import Identity, verify

ALICE = Identity.from_seed(bytes([1]) * 32)
COMMUNITY = bytes([0xC0]) * 32
ADDRESSES = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
CODE = invite.InviteCode.create(ALICE, COMMUNITY, "Loft insulators", ADDRESSES, 2_000_000_000_000)
TEXT = CODE.encode()


def test_code_is_kith1_base32_and_round_trips() -> None:
    assert TEXT.startswith("kith1")
    assert set(TEXT[5:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert invite.decode(TEXT) == CODE


def test_pasting_with_line_breaks_capitals_and_lookalike_digits_still_works() -> None:
    messy = "\n".join(TEXT[i : i + 30] for i in range(0, len(TEXT), 30)).upper()
    assert invite.decode("  " + messy + "\n") == CODE
    # People read 'l' as '1' and 'o' as '0': both are read back as the letters.
    body = TEXT[5:]
    lookalike = "kith1" + body.replace("l", "1").replace("o", "0")
    assert invite.decode(lookalike) == CODE


@given(st.integers(5, len(TEXT) - 1), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
def test_any_single_typo_is_caught_as_a_typo(position: int, char: str) -> None:
    typo = TEXT[:position] + char + TEXT[position + 1 :]
    if typo == TEXT:
        return
    with pytest.raises(invite.InviteChecksumError, match="mistyped"):
        invite.decode(typo)


@given(st.integers(6, len(TEXT) - 1))
def test_a_code_cut_short_is_caught(length: int) -> None:
    with pytest.raises(invite.InviteChecksumError, match="cut short"):
        invite.decode(TEXT[:length])


def test_expired_codes_say_when_and_whom_to_ask() -> None:
    CODE.check_fresh(CODE.expires_at - 1)
    with pytest.raises(invite.InviteExpired) as info:
        CODE.check_fresh(CODE.expires_at)
    message = str(info.value)
    assert "Loft insulators" in message
    assert "expired on 2033-05-18" in message
    assert "ask the person who invited you" in message


def test_a_code_re_signed_by_someone_else_is_refused() -> None:
    mallory = Identity.generate()
    payload = base64.b32decode(TEXT[5:].upper() + "=" * (-len(TEXT[5:]) % 8))[:-5]
    version, body, _ = msgpack.unpackb(payload, raw=False)
    forged_payload = msgpack.packb(
        [version, body, mallory.sign(invite.SIGN_DOMAIN + body)], use_bin_type=True
    )
    checksum = hashlib.blake2b(invite.CHECKSUM_DOMAIN + forged_payload, digest_size=5).digest()
    forged = "kith1" + base64.b32encode(forged_payload + checksum).decode().rstrip("=").lower()
    with pytest.raises(invite.InviteSignatureError, match="altered"):
        invite.decode(forged)


def test_join_proof_binds_the_joiner_and_the_community() -> None:
    bob = Identity.generate()
    proof = CODE.prove_join(bob.public_key)
    invite.verify_join_proof(CODE.invite_key, COMMUNITY, bob.public_key, proof)
    verify(CODE.invite_key, invite.JOIN_DOMAIN + COMMUNITY + bob.public_key, proof)
    with pytest.raises(BadSignature):
        invite.verify_join_proof(CODE.invite_key, bytes(32), bob.public_key, proof)


def test_malformed_inputs_to_create_are_refused() -> None:
    with pytest.raises(invite.InviteFormatError):
        invite.InviteCode.create(ALICE, b"short", "x", [], 1)
    with pytest.raises(invite.InviteFormatError):
        invite.InviteCode.create(ALICE, COMMUNITY, "", [], 1)
    with pytest.raises(invite.InviteFormatError):
        invite.InviteCode.create(ALICE, COMMUNITY, "x", ["not-a-multiaddr"], 1)


def test_qr_code_scans_back_to_the_same_invite() -> None:
    png = invite.qr_png(TEXT)
    assert png.startswith(b"\x89PNG")
    image = QImage.fromData(png).convertToFormat(QImage.Format.Format_Grayscale8)
    assert not image.isNull()
    width, height, stride = image.width(), image.height(), image.bytesPerLine()
    raw = bytes(image.constBits())
    pixels = b"".join(raw[y * stride : y * stride + width] for y in range(height))
    results = zxingcpp.read_barcodes(memoryview(pixels).cast("B", (height, width)))
    assert len(results) == 1
    assert invite.decode(results[0].text) == CODE


def test_the_qr_matrix_an_app_paints_is_the_png_s_code_with_a_quiet_zone() -> None:
    matrix = invite.qr_matrix(TEXT)
    size = len(matrix)
    assert all(len(row) == size for row in matrix)
    zone = invite.QR_QUIET_ZONE
    edges = matrix[:zone] + matrix[-zone:] + [row[:zone] + row[-zone:] for row in matrix]
    assert not any(any(row) for row in edges)  # light all round, as scanners need
    png = QImage.fromData(invite.qr_png(TEXT, scale=1))
    assert (png.width(), png.height()) == (size, size)
    dark = [[png.pixelColor(x, y).lightness() < 128 for x in range(size)] for y in range(size)]
    assert dark == matrix


def _with_checksum(payload: bytes) -> str:
    checksum = hashlib.blake2b(invite.CHECKSUM_DOMAIN + payload, digest_size=5).digest()
    return "kith1" + base64.b32encode(payload + checksum).decode().rstrip("=").lower()


any_code_text = (
    st.text(max_size=200)
    | st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", max_size=300).map("kith1".__add__)
    | st.binary(max_size=400).map(_with_checksum)
    | st.lists(st.one_of(st.integers(-3, 3), st.binary(max_size=300)), max_size=4).map(
        lambda items: _with_checksum(msgpack.packb(items, use_bin_type=True))
    )
)


@given(any_code_text)
def test_any_text_is_a_code_or_an_invite_error(text: str) -> None:
    result: invite.InviteCode | invite.InviteCodeError
    try:
        result = invite.decode(text)
    except invite.InviteCodeError as exc:
        result = exc
    if isinstance(result, invite.InviteCodeError):
        assert str(result)  # every refusal explains itself
    else:
        assert invite.decode(result.encode()) == result


def _payload(text: str) -> bytes:
    return base64.b32decode(text[5:].upper() + "=" * (-len(text[5:]) % 8))[:-5]


def test_one_invite_has_one_encoding() -> None:
    """Re-encodings of a signed invite (a repeated key, a wider header, True for 1) are
    refused, so that implementations cannot read one code two ways."""
    version, body, signature = msgpack.unpackb(_payload(TEXT), raw=False)
    fields = msgpack.unpackb(body, raw=False)
    repeated = (
        b"\x87"
        + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in fields.items())
        + msgpack.packb("name")
        + msgpack.packb("Loft insulators")
    )
    wide_version = b"\x93\xcc\x01" + msgpack.packb(body, use_bin_type=True)
    wide_version += msgpack.packb(signature, use_bin_type=True)
    bool_version = msgpack.packb([True, body, signature], use_bin_type=True)
    for payload in (
        msgpack.packb([version, repeated, ALICE.sign(invite.SIGN_DOMAIN + repeated)]),
        wide_version,
        bool_version,
    ):
        with pytest.raises(invite.InviteFormatError, match="malformed"):
            invite.decode(_with_checksum(payload))


@pytest.mark.parametrize(
    "address",
    ["/x", "/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4001/p2p/", "/p2p/0OIl", "ip4/p2p/x"],
)
def test_bootstrap_addresses_must_name_their_peer(address: str) -> None:
    with pytest.raises(invite.InviteFormatError, match="/p2p/"):
        invite.InviteCode.create(ALICE, COMMUNITY, "x", [address], 1)
