"""Private communities: what their key lets members say to each other that outsiders
cannot link to the community (docs/protocol.md, "Private communities").

The handle names a private community on the network (its gossip topic, its catch-up
sync, peer exchange, the DHT) instead of its id, which appears in every record: only
holders of the community key can compute it.
"""

from __future__ import annotations

import hashlib

from kithnet.crypto import secretbox

HANDLE_DOMAIN = b"kithnet/private-community/1"
GOSSIP_DOMAIN = b"kithnet/private-gossip/1"
KEY_ID_DOMAIN = b"kithnet/key-id/1"


def handle(community_key: bytes) -> bytes:
    """32 bytes: BLAKE2b-256 keyed with the community key over HANDLE_DOMAIN."""
    if len(community_key) != secretbox.KEY_SIZE:
        raise ValueError("a community key is 32 bytes")
    return hashlib.blake2b(HANDLE_DOMAIN, key=community_key, digest_size=32).digest()


def key_id(community_key: bytes) -> bytes:
    """32 bytes naming a content key in `key_update` records, so members can tell who
    holds which key without opening the boxes; not the handle (which names the topic)."""
    if len(community_key) != secretbox.KEY_SIZE:
        raise ValueError("a community key is 32 bytes")
    return hashlib.blake2b(KEY_ID_DOMAIN, key=community_key, digest_size=32).digest()


def seal_gossip(community_key: bytes, data: bytes) -> bytes:
    """A private community's gossip message: XChaCha20-Poly1305 under its key."""
    return secretbox.encrypt(community_key, data, GOSSIP_DOMAIN)


def open_gossip(community_key: bytes, box: bytes) -> bytes:
    """The data of a private gossip message; DecryptionFailed if it is not one."""
    return secretbox.decrypt(community_key, box, GOSSIP_DOMAIN)
