"""The app flow with a certificate instead of a secret (MSAL's private_key_jwt), against the
emulator's verification of the client assertion."""
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from integration.dispatch import Runtime, execute
from integration.engine.errors import AuthError

from engine_fixtures import make_config


def make_cert(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "msteams-soar test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = tmp_path / "app-key.pem"
    path.write_bytes(pem_key)
    return cert, str(path), cert.fingerprint(hashes.SHA1()).hex()


def test_app_flow_with_certificate(emu, tmp_path):
    cert, key_path, thumb = make_cert(tmp_path)
    app = emu.config()["client_id"]
    with emu.state.lock:
        emu.state.apps[app].certificates.append(cert.public_bytes(serialization.Encoding.PEM).decode())
    cfg = make_config(emu, tmp_path, client_secret=None, certificate_path=key_path, certificate_thumbprint=thumb)
    cfg.client_secret = None
    rt = Runtime(cfg)
    r = execute("channel-list", {"team": "IT Helpdesk"}, rt)
    assert r.flow == "app" and {c["channelName"] for c in r.outputs} == {"General", "Escalations"}


def test_unregistered_certificate_is_refused(emu, tmp_path):
    _, key_path, thumb = make_cert(tmp_path)
    cfg = make_config(emu, tmp_path, certificate_path=key_path, certificate_thumbprint=thumb)
    cfg.client_secret = None
    with pytest.raises(AuthError, match="invalid_client"):
        execute("channel-list", {"team": "IT Helpdesk"}, Runtime(cfg))
