"""Loopback TLS for the emulator: a throwaway certificate authority and a server certificate
for 127.0.0.1 and localhost, generated at start with ``cryptography``.

Clients trust the emulator by pointing ``verify=`` (requests) or MSAL's HTTP client at
:attr:`TlsMaterial.ca_path`. Nothing is reused between runs: every start gets a new CA, so a
leaked bundle is worthless once the emulator stops.
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import shutil
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "msteams-soar emulator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class TlsMaterial:
    """A CA, a server certificate signed by it, and the files an SSL context needs.

    The private keys are written with mode 0600 into a private temporary directory (the
    ``ssl`` module only loads keys from files); :meth:`cleanup` removes the directory.
    """

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), directory: str | None = None):
        self.dir = directory or tempfile.mkdtemp(prefix="msteams-emulator-")
        os.chmod(self.dir, 0o700)
        now = _dt.datetime.now(_dt.timezone.utc)
        # Backdate a little so a client whose clock is slightly behind still accepts the chain.
        not_before = now - _dt.timedelta(hours=1)
        not_after = now + _dt.timedelta(days=30)

        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = _name("msteams-soar emulator CA")
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        # Python 3.13+ verifies with VERIFY_X509_STRICT by default, which wants critical basic
        # constraints / key usage and key identifiers on both certificates.
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0])).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        pem = serialization.Encoding.PEM
        self.ca_pem = ca_cert.public_bytes(pem)
        self.ca_path = os.path.join(self.dir, "ca.pem")
        self.cert_path = os.path.join(self.dir, "server.pem")
        self.key_path = os.path.join(self.dir, "server.key")
        self._write(self.ca_path, self.ca_pem, 0o644)
        self._write(self.cert_path, cert.public_bytes(pem) + self.ca_pem, 0o644)
        self._write(self.key_path, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), 0o600)

    @staticmethod
    def _write(path: str, data: bytes, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this emulator's CA (for stdlib clients)."""
        return ssl.create_default_context(cafile=self.ca_path)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
