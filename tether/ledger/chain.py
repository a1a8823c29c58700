"""Ledger hashing (DESIGN.md "Ledger hashing (contract)"; auditors re-implement this)::

entry_n = RFC 8785 (JCS) bytes of event n without its "prev_hash" and "hash" fields
leaf_n  = SHA-256(0x00 || entry_n)
hash_n  = SHA-256(0x01 || prev_hash_n || leaf_n)      prev_hash_0 = 32 zero bytes
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import rfc8785

GENESIS = bytes(32)
_HASH_FIELDS = ("prev_hash", "hash")
MAX_SAFE_INT = 2**53 - 1  # JCS numbers are IEEE doubles: larger ints have no exact form
_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _scalar_is_jcs(value: Any) -> bool:
    kind = type(value)
    if kind is int:
        return bool(-MAX_SAFE_INT <= value <= MAX_SAFE_INT)
    if kind is float:
        # Finite, non-integral and >= 1e-4: Python's repr is then the ECMAScript number form.
        return math.isfinite(value) and not value.is_integer() and abs(value) >= 1e-4
    return kind is str or kind is bool or value is None


def _json_is_jcs(value: Any) -> bool:
    """True when `json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))` is
    byte for byte the JCS form of `value`.

    Python's json escapes strings exactly as RFC 8785 does and prints ints, booleans and null alike.
    It differs only in: float formatting (84.0 vs 84, 1e-05 vs 0.00001, 1e+16 vs 10000000000000000),
    ints beyond 2**53 (JCS refuses them), and key order for keys with characters at or above U+D800
    (code points vs UTF-16 code units). Values with any of those, or other types, take the rfc8785 path.
    """
    kind = type(value)
    if kind is dict:
        try:
            keys = "".join(value)
        except TypeError:  # a key that is not a string
            return False
        if not (keys.isascii() or max(keys) < "\ud800"):
            return False
        items: Iterable[Any] = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return _scalar_is_jcs(value)
    for item in items:
        kind = type(item)
        if kind is str or item is None:
            continue
        nested = kind is dict or kind is list or kind is tuple
        if not (_json_is_jcs(item) if nested else _scalar_is_jcs(item)):
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of `value`; ValueError if it has no JCS form (NaN, huge ints, bad types).

    The `rfc8785` library is the reference; it costs ~60 us for a typical event, so values for which
    the stdlib's C encoder provably gives the same bytes (see `_json_is_jcs`) are encoded with it
    (~15 us). tests/unit/test_ledger_chain.py checks both paths agree on generated values.
    """
    if _json_is_jcs(value):
        return _JSON.encode(value).encode()
    return rfc8785.dumps(value)


def entry_bytes(event: Mapping[str, Any]) -> bytes:
    """entry_n: JCS of the event without its prev_hash and hash fields."""
    return canonical_json({key: value for key, value in event.items() if key not in _HASH_FIELDS})


def leaf_hash(entry: bytes) -> bytes:
    """leaf_n = SHA-256(0x00 || entry_n)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def chain_hash(prev: bytes, leaf: bytes) -> bytes:
    """hash_n = SHA-256(0x01 || prev_hash_n || leaf_n)."""
    return hashlib.sha256(b"\x01" + prev + leaf).digest()
