"""Throw-away TLS material for the local secured broker (Python `cryptography`, no keytool).

`new_authority` makes a self-signed CA (EC P-256, 2 years); `issue` signs a certificate for a name
and its host names / IP addresses (subject alternative names, so clients verify the host) usable
as a TLS server and client certificate (the broker presents it on its client listener and, as a
client, to its own controller listener, which requires one). Keys are PKCS#8 PEM without
encryption: the files that hold them are written mode 0600 (`write_private`).

Kafka reads PEM directly (`ssl.keystore.type=PEM`, `ssl.truststore.type=PEM`), and so do Python's
`ssl` module and both Kafka client libraries.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=730)


@dataclass(frozen=True)
class KeyPair:
    """A private key and its certificate, as PEM bytes."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_authority(common_name: str) -> KeyPair:
    """A new self-signed certificate authority."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return KeyPair(_key_pem(key), certificate.public_bytes(serialization.Encoding.PEM))


def issue(authority: KeyPair, common_name: str, hosts: Sequence[str]) -> KeyPair:
    """A certificate for `common_name` and `hosts` (DNS names or IP addresses), signed by `authority`."""
    ca_key = serialization.load_pem_private_key(authority.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = authority.certificate
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(_key_pem(key), certificate.public_bytes(serialization.Encoding.PEM))


def subject_principal(pair: KeyPair) -> str:
    """The Kafka principal of a TLS client presenting `pair` (the subject's RFC 2253 name, as
    Kafka's default `ssl.principal.mapping.rules` give it), e.g. `User:CN=x,O=y`."""
    return f"User:{pair.certificate.subject.rfc4514_string()}"


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the start (never readable by others, even briefly)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
