"""The re-send after a 401 reuses its TLS context instead of loading the CA bundle on every call."""

import certifi

from tether.proxy.resend import ssl_context


def test_the_ca_bundle_is_loaded_once() -> None:
    assert ssl_context(certifi.where()) is ssl_context(certifi.where())
