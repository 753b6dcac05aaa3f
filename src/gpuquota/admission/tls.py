"""Serving certificates: a self-signed one generated on first start for local use, and hot reload of the files
a cert-manager (or the chart) rotates under a running server.

Reload works on the live ``ssl.SSLContext`` uvicorn created: ``load_cert_chain`` swaps the chain for every new
handshake while open connections keep theirs, so rotation needs no restart and drops no request. The client CA
bundle of mutual TLS (``--client-ca``) cannot be reloaded that way — OpenSSL adds CAs to a live context but never
takes one out — so ``ClientVerification`` hands each new handshake to a context rebuilt from the files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("gpuquota.admission.tls")


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: Path
    key: Path


def generate_self_signed(state_dir: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> CertPair:
    """A P-256 self-signed serving certificate in ``state_dir/tls`` (created once, reused after).

    Local use only: a cluster install gets its certificate from cert-manager or the chart.
    """
    tls_dir = state_dir / "tls"
    pair = CertPair(tls_dir / "tls.crt", tls_dir / "tls.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    tls_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpuquota self-signed")])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.warning("generated a self-signed serving certificate in %s (for local use only)", tls_dir)
    return pair


def reload_cert_chain(context: ssl.SSLContext, pair: CertPair) -> None:
    """Swap the chain on the live context. A half-written rotation (cert and key not matching) raises
    ``ssl.SSLError`` and leaves the previous chain in force: the pair is tried on a scratch context first,
    because a failed ``load_cert_chain`` can leave a context with a certificate and no matching key."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(pair.cert), str(pair.key))
    context.load_cert_chain(str(pair.cert), str(pair.key))


class ClientVerification:
    """The webhook port's check of client certificates (``--client-ca``), reloadable in both directions.

    A CA rotated out of the bundle must stop being trusted without a restart, and a live context cannot forget a
    CA. So each reload builds a fresh context (serving chain and the bundle as the files now are), and the
    listener's own context hands every new handshake to the newest one from its server-name callback, which
    OpenSSL calls with or without SNI (an API server dialling the pod's address sends none). Open connections keep
    the context they started with.
    """

    def __init__(self, listener: ssl.SSLContext, pair: CertPair, client_ca: Path) -> None:
        self.pair = pair
        self.client_ca = client_ca
        self.current = listener
        listener.sni_callback = self._hand_over

    def _hand_over(self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None,
                   context: ssl.SSLContext) -> None:
        current = self.current
        if current is not context:
            connection.context = current

    def reload(self) -> None:
        """The next context from the files. A bundle with no certificate, or a chain and key that do not match,
        raises ``ssl.SSLError`` (or ``OSError``) and leaves the current context in force."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pair.cert), str(self.pair.key))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(self.client_ca))
        self.current = context
