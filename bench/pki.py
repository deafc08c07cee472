"""Throwaway keys for bench.throughput's encrypted reference tunnels: a CA and one
certificate per node for OpenVPN's TLS mode, X25519 key pairs for WireGuard.

Everything is made fresh for a run and written into a directory the caller owns (and
removes); private keys are readable by their owner only.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class NodeFiles:
    """What one OpenVPN node is given: the CA to check its peer against, its own
    certificate and key (PEM)."""
    ca: Path
    cert: Path
    key: Path


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue(directory: Path, names: Sequence[str],
          now: datetime.datetime | None = None) -> dict[str, NodeFiles]:
    """A self-signed CA (EC P-256) and, per name, a certificate it signs, usable as a TLS
    server and as a client (either end of a peer-to-peer link may take either role)."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("pyflannel bench CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_path = _write(directory / "ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    out = {}
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=True, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        out[name] = NodeFiles(ca_path, _write(directory / f"{name}.crt", pem),
                              _write(directory / f"{name}.key", _key_pem(key), private=True))
    return out


@dataclass(frozen=True)
class WireGuardKey:
    private_file: Path     # base64, as `wg set ... private-key FILE` reads it
    public: str            # base64, as `wg set ... peer KEY` takes it


def wireguard_key(directory: Path, name: str) -> WireGuardKey:
    """An X25519 key pair: the private half in a file of its own, the public half."""
    key = x25519.X25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    path = _write(directory / f"{name}.wg", base64.b64encode(raw) + b"\n", private=True)
    return WireGuardKey(path, base64.b64encode(public).decode())
