"""A throwaway certificate authority for the local sandbox providers.

The CA and the server certificates it issues carry the extensions strict verifiers (OpenSSL 3,
Python's VERIFY_X509_STRICT, curl, git) insist on: BasicConstraints, KeyUsage, ExtendedKeyUsage,
SubjectAlternativeName, SubjectKeyIdentifier and AuthorityKeyIdentifier.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The hosts the sandbox providers stand in for, plus the loopback names a client may use directly.
DEFAULT_SERVER_NAMES: tuple[str, ...] = (
    "api.github.com",
    "github.com",
    "uploads.github.com",
    "slack.com",
    "localhost",
    "127.0.0.1",
    "::1",
)

CA_VALIDITY = datetime.timedelta(days=30)
SERVER_VALIDITY = datetime.timedelta(days=7)
# Tolerates a client clock slightly behind ours.
BACKDATE = datetime.timedelta(hours=1)

# TLS server name (SNI) each sandbox connection asked for, so a test can check what the proxy sent.
_server_names: weakref.WeakKeyDictionary[ssl.SSLObject | ssl.SSLSocket, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class IssuedCert:
    """PEM files of one server certificate (the chain file holds the leaf only; the CA is the root)."""

    names: tuple[str, ...]
    cert_path: Path
    key_path: Path


def requested_server_name(ssl_object: object) -> str | None:
    """The SNI a client sent on a connection served with `SandboxCA.ssl_context`, if any."""
    if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return _server_names.get(ssl_object)
    return None


def _remember_server_name(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _context: ssl.SSLContext
) -> None:
    if server_name is not None:
        _server_names[ssl_object] = server_name


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures for servers (ECDHE); certificate and CRL signing for the CA only."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def write_private(path: Path, data: bytes) -> None:
    """Writes a private key readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class SandboxCA:
    """Creates a self-signed CA in `directory` (writes `ca.pem`, `ca-key.pem`) and issues server certs."""

    def __init__(self, directory: Path, common_name: str = "tether sandbox CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tether sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        public_key = self._key.public_key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = directory / "ca.pem"
        self.cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        write_private(directory / "ca-key.pem", private_pem(self._key))
        self._issued: dict[tuple[str, ...], IssuedCert] = {}

    def issue(self, names: Iterable[str] = DEFAULT_SERVER_NAMES) -> IssuedCert:
        """Issues (once per set of names) a server certificate for DNS names and IP addresses."""
        key_names = tuple(dict.fromkeys(names))
        if not key_names:
            raise ValueError("a server certificate needs at least one DNS name or IP address")
        if key_names in self._issued:
            return self._issued[key_names]
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key_names[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + SERVER_VALIDITY, self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in key_names]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = f"server-{len(self._issued)}"
        issued = IssuedCert(key_names, self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem")
        issued.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(issued.key_path, private_pem(key))
        self._issued[key_names] = issued
        return issued

    def ssl_context(self, names: Sequence[str] = DEFAULT_SERVER_NAMES) -> ssl.SSLContext:
        """A TLS 1.2+ server context (ALPN http/1.1) presenting a certificate for `names`."""
        issued = self.issue(names)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(issued.cert_path, issued.key_path)
        # aiohttp speaks HTTP/1.1 only; say so instead of letting a client assume h2.
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = _remember_server_name
        return context
