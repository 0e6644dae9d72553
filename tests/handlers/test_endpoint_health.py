"""integration-health checks the bot endpoint where bot_public_url says it is (issue 11, part 7):
GET /healthz answers, and its TLS certificate is valid for the host (and when it expires)."""
from __future__ import annotations

import socket

from engine_fixtures import make_config
from integration.frontends.bot import server as bot_server
from integration.dispatch import Runtime, execute


def _health(emu, tmp_path, url):
    cfg = make_config(emu, tmp_path, bot_public_url=url)
    rt = Runtime(cfg)
    try:
        r = execute("integration-health", {}, rt)
    finally:
        rt.close()
    return r, {row["check"]: row for row in r.outputs}


def _endpoint(emu, tmp_path, **tls):
    cfg = make_config(emu, tmp_path)
    rt = Runtime(cfg)
    rt.echo = lambda s: None
    return rt, bot_server.BotServer(bot_server.build(rt, workers=1), **tls).start()


def test_reachable_endpoint_with_a_valid_certificate(emu, tmp_path):
    rt, server = _endpoint(emu, tmp_path, tls_cert=emu.tls.cert_path, tls_key=emu.tls.key_path)
    try:
        r, rows = _health(emu, tmp_path, server.url + "/")
    finally:
        server.stop()
        rt.close()
    ep = rows["endpoint"]
    assert ep["status"] == "ok" and ep["url"] == server.url + "/healthz", ep
    assert ep["certificateExpiresOn"] and "certificate valid until" in ep["detail"]
    assert r.exit_code == 0 or rows["app"]["status"] != "ok"


def test_unreachable_endpoint_is_a_problem(emu, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    r, rows = _health(emu, tmp_path, f"https://127.0.0.1:{port}")
    assert rows["endpoint"]["status"] == "unreachable" and r.exit_code == 3
    assert "endpoint: unreachable" in r.message


def test_untrusted_certificate_is_reported(emu, tmp_path):
    from fake_tenant.tls import TlsMaterial

    (tmp_path / "other").mkdir()
    other = TlsMaterial(directory=str(tmp_path / "other"))  # a CA the config does not trust
    rt, server = _endpoint(emu, tmp_path, tls_cert=other.cert_path, tls_key=other.key_path)
    try:
        r, rows = _health(emu, tmp_path, server.url)
    finally:
        server.stop()
        rt.close()
    assert rows["endpoint"]["status"] == "certificate invalid" and r.exit_code == 3, rows["endpoint"]


def test_plain_http_on_loopback_checks_healthz_only(emu, tmp_path):
    rt, server = _endpoint(emu, tmp_path)
    try:
        _, rows = _health(emu, tmp_path, server.url)
    finally:
        server.stop()
        rt.close()
    assert rows["endpoint"]["status"] == "ok" and rows["endpoint"]["certificateExpiresOn"] is None


def test_no_public_url_no_endpoint_row(emu, tmp_path):
    cfg = make_config(emu, tmp_path)
    rt = Runtime(cfg)
    try:
        rows = {row["check"] for row in execute("integration-health", {}, rt).outputs}
    finally:
        rt.close()
    assert "endpoint" not in rows
