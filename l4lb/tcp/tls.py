"""
TLS on both sides of the relay, built on Twisted's TLS (pyOpenSSL).

  - Termination: a bind with C{ssl crt PATH} listens through a
    L{TLSMemoryBIOFactory} around the frontend's factory, so that the relay
    sees decrypted bytes from clients and sends plaintext to servers.
  - Origination: a server with C{ssl} gets a connection creator
    (L{Server.tls <l4lb.pool.Server>}) that the relay and the health checks
    wrap their connections with.  With C{verify required} (the default) the
    server's certificate must chain to C{ca-file} (or the system's trust
    store) and name the server (L{ServerSpec.tls_name
    <l4lb.config.model.ServerSpec.tls_name>}, checked with
    C{service_identity}: a DNS name, or an IP address SAN for an address).

Both kinds of TLS legs end one direction at a time, as TCP does
(L{HalfCloseTLSTransport}): the relay carries a half-close across them.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from twisted.internet import error, ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.config.model import BindSpec, ServerSpec
from l4lb.config.tls import load_ca_file, load_certificate_file
from l4lb.config.units import is_ip_literal
from l4lb.tcp._tlsclose import HalfCloseTLSTransport


def _certificate_options(path: str) -> Dict[str, Any]:
    """
    The C{CertificateOptions} arguments that present the certificate file
    at C{path}: its key, its certificate and the rest of its chain.
    """
    certificates, key = load_certificate_file(path)
    chain = [crypto.X509.from_cryptography(c) for c in certificates]
    private: PrivateKeyTypes = key
    return {
        "privateKey": crypto.PKey.from_cryptography_key(private),  # type: ignore[arg-type]
        "certificate": chain[0],
        "extraCertChain": chain[1:],
    }


def server_options(crt: str) -> ssl.CertificateOptions:
    """
    The TLS settings of a bind that terminates TLS with the certificate
    file C{crt}.

    @raise l4lb.config.errors.InvalidValue: When the file cannot be used.
    """
    return ssl.CertificateOptions(**_certificate_options(crt))


def tls_factory(creator: Any, is_client: bool, wrapped: Any, reactor: Any) -> TLSMemoryBIOFactory:
    """
    A factory that runs TLS (with L{HalfCloseTLSTransport}) under the
    protocols of C{wrapped}.

    @param creator: The TLS settings: a client or server connection
        creator.
    @param is_client: Whether the connections are TLS clients.
    """
    factory = TLSMemoryBIOFactory(creator, is_client, wrapped, clock=reactor)
    factory.protocol = HalfCloseTLSTransport
    return factory


def listening_factory(bind: BindSpec, factory: Any, reactor: Any) -> Any:
    """
    The factory a bind listens with: C{factory} itself, or for a bind with
    C{ssl crt} one that terminates TLS in front of it.
    """
    if bind.crt is None:
        return factory
    return tls_factory(server_options(bind.crt), False, factory, reactor)


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """
    Client TLS that sends a server name but checks no certificate
    (C{verify none}).
    """

    def __init__(self, options: ssl.CertificateOptions, name: Optional[str]) -> None:
        self._options = options
        self._name = None if name is None or is_ip_literal(name) else name.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        Make the connection of one TLS client, with the server name set.
        """
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._name is not None:
            connection.set_tlsext_host_name(self._name)
        return connection


def client_creator(spec: ServerSpec) -> IOpenSSLClientConnectionCreator:
    """
    The TLS settings of connections to a server (its C{ssl}, C{verify},
    C{ca-file}, C{sni}, C{verifyhost} and C{crt} options).

    @raise l4lb.config.errors.InvalidValue: When a file it names cannot be
        used.
    """
    extra: Dict[str, Any] = {}
    if spec.crt is not None:
        extra = _certificate_options(spec.crt)
    if spec.verify == "none":
        return _Unverified(ssl.CertificateOptions(verify=False, **extra), spec.sni)
    trust: Any
    if spec.ca_file is not None:
        trust = ssl.trustRootFromCertificates(
            [ssl.Certificate(crypto.X509.from_cryptography(c)) for c in load_ca_file(spec.ca_file)]
        )
    else:
        trust = ssl.platformTrust()
    return ssl.optionsForClientTLS(
        spec.tls_name, trustRoot=trust, extraCertificateOptions=extra
    )


def attach_tls(servers: Iterable[Any]) -> None:
    """
    Give each server with C{ssl} its TLS settings (L{Server.tls
    <l4lb.pool.Server>}).
    """
    for server in servers:
        if server.spec.ssl:
            server.tls = client_creator(server.spec)


def tls_failure_text(reason: Failure) -> str:
    """
    Say in a few words why a TLS connection failed before its handshake
    completed (for logs and check descriptions).
    """
    value = reason.value
    if isinstance(value, VerificationError):
        names = []
        for mismatch in value.errors:
            wanted = getattr(mismatch, "mismatched_id", None)
            name = getattr(wanted, "hostname", None) or getattr(wanted, "ip", None) or mismatch
            names.append(name.decode("ascii", "replace") if isinstance(name, bytes) else str(name))
        return f"certificate does not name {', '.join(names)}"
    if isinstance(value, SSL.Error):
        reasons = [
            part[2] for part in (value.args[0] if value.args else ())
            if isinstance(part, tuple) and len(part) == 3 and part[2]
        ]
        if reasons:
            return "TLS error: " + ", ".join(reasons)
    if isinstance(value, (error.ConnectionDone, error.ConnectionLost)):
        return "connection closed during the TLS handshake"
    return str(value) or type(value).__name__
