"""The Google service account minter's key handling and assertion (the HTTP side runs in integration)."""

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from tether.broker.google import GoogleServiceAccountMinter
from tether.broker.jwt import decode_rs256
from tether.broker.provider_http import ProviderHTTP
from tether.broker.registry import build_broker
from tether.config import ConfigError
from tether.credential_types import GoogleServiceAccountCredential
from tether.sandbox.pki import private_pem, write_private


def credential(path, **extra):
    return GoogleServiceAccountCredential.model_validate(
        {"type": "google_service_account", "key_file": path, **extra}
    )


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_file(tmp_path, key, **fields):
    document = {
        "type": "service_account",
        "private_key_id": "kid123",
        "private_key": private_pem(key).decode(),
        "client_email": "sa@p.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
        **fields,
    }
    path = tmp_path / "sa.json"
    write_private(path, json.dumps(document).encode())
    return path


def test_assertion_has_googles_claims(tmp_path, key):
    minter = GoogleServiceAccountMinter("g", credential(key_file(tmp_path, key)), ProviderHTTP({}))
    header, claims = decode_rs256(minter.assertion(["a", "b"], "alice@acme.example"), key.public_key())
    assert header["kid"] == "kid123"
    assert claims["iss"] == "sa@p.iam.gserviceaccount.com"
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert claims["scope"] == "a b" and claims["sub"] == "alice@acme.example"
    assert claims["exp"] - claims["iat"] == 3600 and abs(claims["iat"] - time.time()) < 5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "authorized_user"}, "not a service account key"),
        ({"private_key": "nope"}, "not an unencrypted PEM private key"),
        ({"token_uri": "http://insecure.example/token"}, "must be an https:// URL"),
    ],
)
def test_unusable_key_files_refuse_to_start(tmp_path, key, fields, message):
    with pytest.raises(ConfigError, match=message):
        build_broker({"g": credential(key_file(tmp_path, key, **fields))})


def test_subject_and_impersonate_exclude_each_other(tmp_path):
    with pytest.raises(ValidationError, match="cannot be combined"):
        credential(tmp_path / "sa.json", subject="a@b.c", impersonate="x@p.iam.gserviceaccount.com")
