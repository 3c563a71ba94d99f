"""Keys, signatures, boxes, invite codes and the passphrase KDF. A leaf: imports no
other kithnet package, and no trio, Qt, libp2p or sqlcipher3."""
