"""RS256 JSON Web Tokens (RFC 7519) with `cryptography`: what GitHub Apps and Google service accounts sign.

Only compact JWS with alg RS256 is produced or accepted; `decode_rs256` is used by the sandbox
providers to check what the minters send, as the real token endpoints do.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class JWTError(Exception):
    """A key or token that cannot be used; the message never holds key material."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_rsa_private_key(pem: bytes, what: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#1 or PKCS#8, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise JWTError(f"{what} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise JWTError(f"{what} is not an RSA key (RS256 needs one)")
    return key


def sign_rs256(
    claims: Mapping[str, Any], key: rsa.RSAPrivateKey, headers: Mapping[str, str] | None = None
) -> str:
    header = {"alg": "RS256", "typ": "JWT", **(headers or {})}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def decode_rs256(token: str, key: rsa.RSAPublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact RS256 JWT whose signature `key` verifies. Claims are not checked."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("not a compact JWS (three dot-separated parts)")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
        signature = _unb64url(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise JWTError("malformed JWT encoding") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("JWT header and claims must be JSON objects")
    if header.get("alg") != "RS256":
        raise JWTError(f"unsupported JWT alg {header.get('alg')!r} (expected RS256)")
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise JWTError("JWT signature does not verify") from None
    return header, claims
