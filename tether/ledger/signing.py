"""Ed25519 keys and C2SP signed notes (c2sp.org/signed-note), as used by ledger checkpoints.

- key id      = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)
- verifier key: `<name>+<hex key id>+<base64(0x01 || public key)>` (what `tether ledger pubkey` prints)
- signer key  : `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>` (Go's golang.org/x/mod/sumdb/note
  form; the key file tether creates holds this, mode 0600)
- a note is its text (ending in a newline), a blank line, then one line per signature:
  `— <name> <base64(key id || Ed25519 signature of the text)>`
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = b"\x01"
SIG_PREFIX = "\u2014 "  # em dash and a space
MAX_SIGNATURES = 100


class SigningKeyError(ValueError):
    """A key (file or text) that cannot be used."""


class NoteError(ValueError):
    """A signed note that is malformed."""


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(ch.isspace() or ch == "+" for ch in name):
        raise SigningKeyError(f"invalid key name {name!r}: non-empty, without spaces or '+'")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    name: str
    public: bytes  # 32 raw bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    def encode(self) -> str:
        """The C2SP verifier key text."""
        encoded = base64.b64encode(ALG_ED25519 + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_verifier(text: str) -> Verifier:
    """A verifier from its C2SP text; SigningKeyError if malformed or if its key id does not match."""
    parts = text.strip().split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise SigningKeyError("a verifier key looks like <name>+<8 hex digits>+<base64>")
    name, hex_id, encoded = parts
    _check_name(name)
    try:
        raw = base64.b64decode(encoded, validate=True)
        wanted_id = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError):
        raise SigningKeyError("a verifier key looks like <name>+<8 hex digits>+<base64>") from None
    if len(raw) != 33 or raw[:1] != ALG_ED25519:
        raise SigningKeyError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
    verifier = Verifier(name, raw[1:])
    if len(wanted_id) != 4 or verifier.key_id != wanted_id:
        raise SigningKeyError(f"verifier key for {name}: key id {hex_id} does not match the key")
    return verifier


def read_verifiers(path: Path) -> list[Verifier]:
    """Every verifier key in `path` (one per line; blank lines and `#` comments ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"cannot read public key file {path}: {exc}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                keys.append(parse_verifier(line))
            except SigningKeyError as exc:
                raise SigningKeyError(f"{path}:{number}: {exc}") from None
    if not keys:
        raise SigningKeyError(f"{path}: no verifier key in the file")
    return keys


class Signer:
    """An Ed25519 signing key with its note key name."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._private = private
        self.verifier = Verifier(name, _raw_public(private.public_key()))

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def encode(self) -> str:
        """The Go `PRIVATE+KEY+…` form (a secret: written only to a 0600 file)."""
        seed = self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        encoded = base64.b64encode(ALG_ED25519 + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{encoded}"

    def sign(self, text: str) -> str:
        """`text` (lines ending in a newline) as a signed note."""
        if not text.endswith("\n") or "\n\n" in text:
            raise NoteError("note text must end in a newline and have no blank line")
        signature = self._private.sign(text.encode())
        line = base64.b64encode(self.key_id + signature).decode()
        return f"{text}\n{SIG_PREFIX}{self.name} {line}\n"


def parse_signer(text: str, name: str) -> Signer:
    """A signer from a key file's text: the Go `PRIVATE+KEY+…` form (whose name must be `name`) or an
    Ed25519 private key in PEM (PKCS#8), which then gets the name `name`."""
    text = text.strip()
    if text.startswith("PRIVATE+KEY+"):
        parts = text.split("+", 4)  # base64 may itself contain '+'
        if len(parts) != 5:
            raise SigningKeyError("malformed PRIVATE+KEY signer key")
        _, _, found_name, hex_id, encoded = parts
        if found_name != name:
            raise SigningKeyError(f"signing key is named {found_name!r}; this ledger needs {name!r}")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise SigningKeyError("malformed PRIVATE+KEY signer key (base64)") from None
        if len(raw) != 33 or raw[:1] != ALG_ED25519:
            raise SigningKeyError("only Ed25519 signer keys (type 0x01, 32-byte seed) are supported")
        signer = Signer(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != hex_id:
            raise SigningKeyError("signing key: key id does not match the key")
        return signer
    try:
        private = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(
            "signing key file holds neither a PRIVATE+KEY key nor a PEM private key"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError("signing key must be Ed25519")
    return Signer(name, private)


def write_private_file(path: Path, text: str) -> None:
    """Write a secret file atomically, mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_or_create_signer(path: Path, name: str, *, create: bool) -> Signer:
    """The signer in `path`; when the file does not exist and `create`, a new key written there (0600)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not create:
            raise SigningKeyError(f"no signing key at {path}") from None
        signer = Signer.generate(name)
        write_private_file(path, signer.encode() + "\n")
        return signer
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"cannot read signing key {path}: {exc}") from None
    if os.stat(path).st_mode & 0o077:
        raise SigningKeyError(f"signing key {path} is readable by others; chmod 600 it")
    return parse_signer(text, name)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """(text, signatures) of a signed note; NoteError if malformed."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures)")
    text, lines = note[: cut + 1], note[cut + 2 :].splitlines()
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError("a signed note has 1 to 100 signature lines")
    signatures = []
    for line in lines:
        if not line.startswith(SIG_PREFIX) or line.count(" ") != 2:
            raise NoteError(f"malformed signature line {line[:80]!r}")
        name, encoded = line[len(SIG_PREFIX) :].split(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteError("signature is not base64") from None
        if len(raw) < 5:
            raise NoteError("signature too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, signatures


class UnknownKey(Exception):
    """No signature of the note is by a known key."""


class BadSignature(Exception):
    """A signature by a known key does not verify."""


def open_note(note: str, verifiers: Iterable[Verifier]) -> tuple[str, Verifier]:
    """The text of `note` and the known key that signed it. Raises NoteError (malformed), UnknownKey
    (no signature by a known key) or BadSignature (a known key's signature fails: the note is rejected,
    as the C2SP spec demands)."""
    text, signatures = split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    signer: Verifier | None = None
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), sig.signature):
            raise BadSignature(f"signature by {verifier.encode()} does not verify")
        signer = signer or verifier
    if signer is None:
        ids = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        raise UnknownKey(f"signed by unknown key(s): {ids}")
    return text, signer
