"""The domain: signed records, their kinds and validation rules. Pure: imports only
kithnet.crypto, msgpack and the standard library."""
