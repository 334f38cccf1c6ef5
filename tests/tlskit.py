"""
Certificates for the TLS tests, made at test time with C{cryptography}: a
test CA, a server certificate signed by it for C{db.internal}, C{localhost}
and C{127.0.0.1}, one for a wrong name, and one from another CA.

Each certificate file holds the certificate, the CA's certificate as its
chain, and the key, as C{crt} expects; C{ca.pem} holds the CA alone.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import List, Optional

import attr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@attr.s(frozen=True, auto_attribs=True)
class Pki:
    """
    Paths of the test certificates.

    @ivar ca: The test CA's certificate (a C{ca-file}).
    @ivar server: Certificate, chain and key for C{db.internal},
        C{localhost} and C{127.0.0.1}.
    @ivar wrong: Certificate, chain and key for C{wrong.internal} only.
    @ivar stranger: Certificate and key for C{db.internal} from another CA.
    @ivar key_only: A file with a key and no certificate.
    @ivar mismatched: A certificate with another certificate's key.
    """

    ca: str
    server: str
    wrong: str
    stranger: str
    key_only: str
    mismatched: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _sign(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: Optional[x509.Certificate],
    issuer_key: ec.EllipticCurvePrivateKey,
    names: List[str],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        alternatives: List[x509.GeneralName] = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: str) -> Pki:
    """
    Write the test certificates into C{directory}.
    """
    ca_key = _key()
    ca = _sign("l4lb test CA", ca_key, None, ca_key, [])
    other_key = _key()
    other = _sign("another CA", other_key, None, other_key, [])

    def write(name: str, data: bytes) -> str:
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def leaf(name: str, names: List[str], issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey) -> str:
        key = _key()
        cert = _sign(names[0], key, issuer, issuer_key, names)
        return write(name, _cert_pem(cert) + _cert_pem(issuer) + _key_pem(key))

    server_key = _key()
    server_cert = _sign("db.internal", server_key, ca, ca_key, ["db.internal"])
    return Pki(
        ca=write("ca.pem", _cert_pem(ca)),
        server=leaf("server.pem", ["db.internal", "localhost", "127.0.0.1"], ca, ca_key),
        wrong=leaf("wrong.pem", ["wrong.internal"], ca, ca_key),
        stranger=leaf("stranger.pem", ["db.internal", "127.0.0.1"], other, other_key),
        key_only=write("key-only.pem", _key_pem(_key())),
        mismatched=write("mismatched.pem", _cert_pem(server_cert) + _key_pem(_key())),
    )
