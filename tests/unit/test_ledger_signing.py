"""C2SP signed notes and keys, checked against the reference vector of Go's golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tether.ledger.signing import (
    BadSignature,
    NoteError,
    Signer,
    SigningKeyError,
    UnknownKey,
    load_or_create_signer,
    open_note,
    parse_signer,
    parse_verifier,
    read_verifiers,
)

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann "
    + "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_reference_vector() -> None:
    signer = parse_signer(GO_SKEY, "PeterNeumann")
    assert signer.encode() == GO_SKEY
    assert signer.verifier.encode() == GO_VKEY
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.sign(GO_TEXT) == GO_NOTE  # Ed25519 is deterministic
    text, verifier = open_note(GO_NOTE, [parse_verifier(GO_VKEY)])
    assert (text, verifier.encode()) == (GO_TEXT, GO_VKEY)


def test_open_note_rejects_unknown_keys_and_bad_signatures() -> None:
    other = Signer.generate("PeterNeumann")
    with pytest.raises(UnknownKey):
        open_note(GO_NOTE, [other.verifier])
    tampered = GO_NOTE.replace("problem,", "problem;")
    with pytest.raises(BadSignature):
        open_note(tampered, [parse_verifier(GO_VKEY)])
    # A second signature by an unknown key is ignored, as the spec says.
    cosigned = GO_NOTE + other.sign(GO_TEXT).split("\n\n")[1]
    assert open_note(cosigned, [parse_verifier(GO_VKEY)])[0] == GO_TEXT


@pytest.mark.parametrize(
    "note",
    ["no signature\n", GO_TEXT + "\n- PeterNeumann AAAA\n", GO_TEXT + "\n\u2014 PeterNeumann !!!\n", GO_TEXT],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [parse_verifier(GO_VKEY)])


@pytest.mark.parametrize(
    "text",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key id
        "PeterNeumann+c74f20a3+ApSc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong type
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
    ],
)
def test_bad_verifier_keys(text: str) -> None:
    with pytest.raises(SigningKeyError):
        parse_verifier(text)


def test_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger-signing.key"
    with pytest.raises(SigningKeyError, match="no signing key"):
        load_or_create_signer(path, "tether/chn_x", create=False)
    created = load_or_create_signer(path, "tether/chn_x", create=True)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_signer(path, "tether/chn_x", create=False).verifier == created.verifier
    with pytest.raises(SigningKeyError, match="needs"):
        load_or_create_signer(path, "tether/chn_other", create=False)
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="readable by others"):
        load_or_create_signer(path, "tether/chn_x", create=False)


def test_pem_key_file_and_verifier_files(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    signer = parse_signer(pem, "tether/chn_x")
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# auditors' keys\n{signer.verifier.encode()}\n\n{GO_VKEY}\n")
    assert [key.encode() for key in read_verifiers(keys)] == [signer.verifier.encode(), GO_VKEY]
    keys.write_text("garbage\n")
    with pytest.raises(SigningKeyError, match=r"keys\.txt:1"):
        read_verifiers(keys)
