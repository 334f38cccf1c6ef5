"""
Checking the files that TLS options name, when the configuration is read.

A certificate file (C{crt} on a bind or a server) is a PEM file holding the
certificate first, then any intermediate certificates of its chain, and the
private key (anywhere in the file), as HAProxy reads it.  A CA file
(C{ca-file}) holds one or more PEM certificates.  Problems are reported as
L{InvalidValue}s, which the parser turns into C{file:line:} errors, so that a
missing or wrong file stops l4lb at start rather than at the first
connection.
"""

from __future__ import annotations

import re
from typing import List, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from l4lb.config.errors import InvalidValue
from l4lb.config.model import ServerSpec

_KEY = re.compile(
    rb"-----BEGIN ([A-Z ]*PRIVATE KEY)-----\r?\n.*?-----END \1-----", re.DOTALL
)


def _read(path: str, what: str) -> bytes:
    """
    Read a whole file.

    @raise InvalidValue: When it is missing or unreadable.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InvalidValue(f"{what} {path!r} does not exist")
    except IsADirectoryError:
        raise InvalidValue(f"{what} {path!r} is a directory, not a PEM file")
    except OSError as error:
        raise InvalidValue(f"cannot read {what} {path!r}: {error.strerror or error}")


def _certificates(data: bytes, path: str, what: str) -> List[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InvalidValue(f"{what} {path!r} holds no PEM certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise InvalidValue(f"{what} {path!r} holds an invalid certificate: {error}")


def load_certificate_file(
    path: str,
) -> Tuple[List[x509.Certificate], PrivateKeyTypes]:
    """
    Read a certificate file: its certificates (the server's own first, then
    its chain) and its private key.

    @raise InvalidValue: When the file is missing or unreadable, holds no
        certificate or no key, holds an encrypted key, or the key is not the
        certificate's.
    """
    what = "certificate file"
    data = _read(path, what)
    certificates = _certificates(data, path, what)
    found = _KEY.search(data)
    if found is None:
        raise InvalidValue(
            f"{what} {path!r} holds no private key; put the key in the same"
            " PEM file as the certificate and its chain"
        )
    if b"ENCRYPTED" in found.group(1) or b"Proc-Type: 4,ENCRYPTED" in found.group(0):
        raise InvalidValue(
            f"{what} {path!r} holds an encrypted private key; l4lb cannot ask"
            " for a pass phrase, store the key unencrypted"
        )
    try:
        key = serialization.load_pem_private_key(found.group(0), password=None)
    except (ValueError, TypeError) as error:
        raise InvalidValue(f"{what} {path!r} holds an invalid private key: {error}")
    public = certificates[0].public_key()
    same = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*same) != public.public_bytes(*same):
        raise InvalidValue(
            f"{what} {path!r}: the private key does not belong to the first"
            " certificate (the first certificate must be the server's own)"
        )
    return certificates, key


def load_ca_file(path: str) -> List[x509.Certificate]:
    """
    Read a CA file: the certificates trusted to sign servers' certificates.

    @raise InvalidValue: When the file is missing or unreadable or holds no
        valid certificate.
    """
    what = "CA file"
    return _certificates(_read(path, what), path, what)


def check_server_tls(spec: ServerSpec) -> List[str]:
    """
    Check the TLS options of a server and read the files they name.

    @return: One message per problem (none when the server uses no TLS).
    """
    if not (spec.ssl or spec.check_ssl):
        return []
    errors: List[str] = []
    if spec.sni and spec.verifyhost and spec.sni != spec.verifyhost:
        errors.append(
            f"'sni {spec.sni}' and 'verifyhost {spec.verifyhost}' differ; the"
            " name sent is the name verified, so give one of them (or the same"
            " name twice)"
        )
    if spec.ssl and spec.send_proxy:
        errors.append(
            "'send-proxy' cannot be combined with 'ssl': the PROXY header would"
            " travel inside TLS, where servers do not look for it"
        )
    if spec.verify == "required" and spec.ca_file is not None:
        try:
            load_ca_file(spec.ca_file)
        except InvalidValue as error:
            errors.append(f"server option 'ca-file': {error.message}")
    if spec.crt is not None:
        try:
            load_certificate_file(spec.crt)
        except InvalidValue as error:
            errors.append(f"server option 'crt': {error.message}")
    return errors
