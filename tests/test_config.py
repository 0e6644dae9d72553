"""Configuration: file + environment, secrets from env or file, unknown keys refused."""
import pytest

from integration import config
from integration.errors import ConfigError, ConfigFileError


def test_file_env_overlay_and_secret_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("from-file-secret\n")
    p = tmp_path / "c.yml"
    p.write_text(f"tenant_id: t1\nclient_id: c1\nclient_secret_file: {secret}\ntimeout: 5\n")
    cfg = config.load(str(p), env={"MSTEAMS_CLIENT_ID": "c2"})
    assert (cfg.tenant_id, cfg.client_id, cfg.client_secret, cfg.timeout) == ("t1", "c2", "from-file-secret", 5.0)
    assert cfg.app_configured and not cfg.bot_configured
    assert "from-file-secret" not in repr(cfg)


def test_unknown_key_and_bad_yaml(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text("tenant: x\n")
    with pytest.raises(ConfigError, match="unknown setting 'tenant'"):
        config.load(str(p), env={})
    p.write_text("a: [\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        config.load(str(p), env={})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(str(tmp_path / "nope.yml"), env={})


def test_env_only():
    cfg = config.load(None, env={"MSTEAMS_TENANT_ID": "t", "MSTEAMS_BOT_ID": "b", "MSTEAMS_BOT_SECRET": "bs-1234"})
    assert cfg.bot_configured and cfg.authority_url.endswith("/t")
