"""Mutual TLS: a network CA, one certificate per peer, and the SSL contexts peers use.

A peer's certificate has its id as common name and as a DNS name. Both sides identify the
other by that DNS name: a client checks it reached the neighbour it meant
(``server_hostname`` = neighbour id), and a server takes the caller's id to be the DNS name
of its certificate that is a known peer. Keys are ECDSA P-256, created readable by their
owner only (0600, in a 0700 directory) from the first byte.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Container
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gossipfl.config import TLSConfig

__all__ = [
    "certificate_names",
    "client_context",
    "create_ca",
    "issue_certificate",
    "peer_identity",
    "server_context",
]

_VALID_DAYS = 825


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 in the same call that creates the file, so no other user can open it
    # between creation and a chmod. An existing key is replaced by a fresh file, never
    # rewritten in place, since its old mode may be wider.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def _private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is masked by the umask, and skipped if it existed


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gossipfl network"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca(directory: Path, name: str = "gossipfl network CA") -> tuple[Path, Path]:
    """Write ``ca.pem`` and ``ca.key`` into ``directory``; returns their paths."""
    _private_directory(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def issue_certificate(
    ca_cert: Path, ca_key: Path, peer_id: str, hosts: list[str], directory: Path
) -> tuple[Path, Path]:
    """Write ``<peer_id>.pem`` and ``<peer_id>.key`` signed by the CA; ``hosts`` (IPs or
    names) go into the subject alternative names beside the peer id."""
    _private_directory(directory)
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key}: expected an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(peer_id)]
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(peer_id))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH, x509.OID_CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{peer_id}.pem", directory / f"{peer_id}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    """Serves with this peer's certificate; verifies any client certificate against the CA.

    Client certificates are optional at the TLS layer so that /health and /metrics stay
    reachable for monitoring; /gossip and /model refuse callers without one (401).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_context(tls: TLSConfig) -> ssl.SSLContext:
    """Presents this peer's certificate; accepts only servers certified by the CA."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def certificate_names(peercert: object) -> tuple[str, ...]:
    """The DNS subjectAltNames of a verified certificate as ``ssl`` reports it."""
    if not isinstance(peercert, dict):
        return ()
    return tuple(str(value) for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")


def peer_identity(peercert: object, known: Container[str]) -> str | None:
    """Which peer a verified client certificate proves the caller is, by the rule a client
    applies to a server (``server_hostname`` = the neighbour's id): the one DNS
    subjectAltName that is a ``known`` peer id. None without a certificate. A certificate
    that names no known peer, or several, gives its names joined by commas, which no peer id
    can equal, so the caller is refused by name."""
    if not peercert:
        return None
    names = certificate_names(peercert)
    matches = [name for name in names if name in known]
    if len(matches) == 1:
        return matches[0]
    return ",".join(names) or "(a certificate without DNS names)"
