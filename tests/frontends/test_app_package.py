"""`msteams app-package`: the zip's manifest validates against Microsoft's published Teams
manifest schema (vendored in tests/data, see tests/data/README.md) and the icons are real PNGs
of the sizes Teams requires."""
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from jsonschema import Draft4Validator, Draft7Validator, validators

from integration.frontends import app_package, cli

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "data" / "MicrosoftTeams.v1.30.schema.json"
# The published schema declares draft-04 but uses draft-06's `const` (manifestVersion): check it too.
Validator = validators.extend(Draft4Validator, {"const": Draft7Validator.VALIDATORS["const"]})


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def errors(schema, manifest):
    return sorted(Validator(schema).iter_errors(manifest), key=lambda e: list(e.absolute_path))


def read_png(data: bytes) -> dict:
    """Parse a PNG's chunks (checking every CRC) and inflate its pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    stride = 1 + width * 4
    assert depth == 8 and color_type == 6 and interlace == 0 and len(raw) == stride * height
    pixels = [tuple(raw[y * stride + 1 + x * 4: y * stride + 5 + x * 4]) for y in range(height) for x in range(width)]
    return {"width": width, "height": height, "pixels": pixels}


@pytest.fixture
def built(emu, tmp_path):
    conf = emu.write_config(str(tmp_path / "emu.yml"))
    out, err = [], []
    target = tmp_path / "app.zip"
    code = cli.main(["--config", conf, "app-package", "--out", str(target)], out=out.append, err=err.append)
    assert code == 0, err
    return {"zip": target, "conf": conf, "out": out, "cfg": emu.config()}


def test_manifest_validates_against_the_published_schema(built, schema):
    with zipfile.ZipFile(built["zip"]) as z:
        assert sorted(z.namelist()) == ["color.png", "manifest.json", "outline.png"]  # at the root, as Teams wants
        manifest = json.loads(z.read("manifest.json"))
    assert errors(schema, manifest) == []
    assert manifest["manifestVersion"] == schema["properties"]["manifestVersion"]["const"] == "1.30"
    assert manifest["$schema"].endswith("/v1.30/MicrosoftTeams.schema.json")
    bot = manifest["bots"][0]
    assert bot["botId"] == built["cfg"]["bot_id"] and set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert manifest["webApplicationInfo"]["id"] == built["cfg"]["client_id"]
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert manifest["validDomains"] == []  # no bot_public_url in the emulator's config
    assert bot["isNotificationOnly"] is False and bot["supportsCalling"] is False and bot["commandLists"]
    assert "wrote" in built["out"][-1] and manifest["id"] in built["out"][-1]


def test_icons_are_pngs_of_the_required_sizes(built):
    with zipfile.ZipFile(built["zip"]) as z:
        color, outline = read_png(z.read("color.png")), read_png(z.read("outline.png"))
    assert (color["width"], color["height"]) == (192, 192)
    assert (outline["width"], outline["height"]) == (32, 32)
    assert all(p[3] == 255 for p in color["pixels"])  # full colour, opaque
    assert len(set(color["pixels"])) == 2  # accent background and the white mark
    # outline: white on transparent only, with something drawn
    assert set(outline["pixels"]) == {(255, 255, 255, 255), (0, 0, 0, 0)}


def test_the_validation_has_teeth(built, schema):
    with zipfile.ZipFile(built["zip"]) as z:
        good = json.loads(z.read("manifest.json"))
    broken = [dict(good, manifestVersion="1.29"), dict(good, accentColor="blue"),
              dict(good, bots=[{"scopes": ["personal"]}]), {k: v for k, v in good.items() if k != "developer"},
              dict(good, bots=[dict(good["bots"][0], scopes=["everywhere"])])]
    for manifest in broken:
        assert errors(schema, manifest), manifest


def test_app_id_is_stable_and_overridable(emu, tmp_path, built):
    first = json.loads(zipfile.ZipFile(built["zip"]).read("manifest.json"))
    again = tmp_path / "again.zip"
    assert cli.main(["--config", built["conf"], "app-package", "--out", str(again), "--version", "1.0.1"],
                    out=lambda s: None, err=lambda s: None) == 0
    second = json.loads(zipfile.ZipFile(again).read("manifest.json"))
    assert second["id"] == first["id"] and second["version"] == "1.0.1"
    fixed = "3f0c8a2e-5b1d-4c7e-9a6f-2d4b8e1c7a90"
    m = app_package.build_manifest(bot_id=built["cfg"]["bot_id"], app_id=fixed, valid_domains=["a.example", "a.example"])
    assert m["id"] == fixed and m["validDomains"] == ["a.example"] and "webApplicationInfo" not in m


def test_long_texts_are_cut_to_the_schema_limits(schema):
    m = app_package.build_manifest(bot_id="9c2e4b6d-8f1a-4d3c-b5e7-2a4c6e8f0b1d", name="N" * 200,
                                   short_description="s" * 200, developer="d" * 50)
    assert errors(schema, m) == []


def test_failures_exit_codes(emu, tmp_path, monkeypatch):
    cfg = dict(emu.config(), bot_id=None, bot_secret=None)
    no_bot = tmp_path / "nobot.yml"
    no_bot.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in cfg.items() if v is not None))
    err = []
    run = lambda *a, conf=str(no_bot): cli.main(["--config", conf, "app-package", *a], out=lambda s: None,  # noqa: E731
                                                err=err.append)
    assert run("--out", str(tmp_path / "x.zip")) == 3 and "bot_id" in err[-1]
    assert not (tmp_path / "x.zip").exists()
    good = emu.write_config(str(tmp_path / "emu.yml"))
    assert run("--out", str(tmp_path / "x.zip"), "--accent-color", "purple", conf=good) == 2
    assert "accent-color" in err[-1]
    assert run("--out", str(tmp_path / "x.zip"), "--app-id", "not-a-guid", conf=good) == 2
    assert run("--out", str(tmp_path / "x.zip"), "--version", "1.0", conf=good) == 2
    assert run("--out", str(tmp_path / "no" / "such" / "dir" / "x.zip"), conf=good) == 2
    assert "cannot write" in err[-1]
    for text in err:
        assert emu.config()["bot_secret"] not in text and emu.config()["client_secret"] not in text


def test_listed_as_a_tool():
    assert "app-package" in cli.build_parser(cli._registry()).format_help()


# ---- the conversational bot (issue 11, part 7) ----

def test_conversational_bot_with_commands_domain_and_calling(emu, tmp_path, schema):
    import yaml

    conf = emu.write_config(str(tmp_path / "emu.yml"))
    data = yaml.safe_load(open(conf, encoding="utf-8"))
    data["bot_public_url"] = "https://soar-bot.contoso.example:8443/"
    (tmp_path / "pub.yml").write_text(yaml.safe_dump(data))
    target = tmp_path / "app.zip"
    assert cli.main(["--config", str(tmp_path / "pub.yml"), "app-package", "--out", str(target)],
                    out=lambda s: None, err=lambda s: None) == 0
    manifest = json.loads(zipfile.ZipFile(target).read("manifest.json"))
    assert errors(schema, manifest) == []
    bot = manifest["bots"][0]
    assert bot["isNotificationOnly"] is False and bot["supportsCalling"] is True
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    [commands] = bot["commandLists"]
    assert set(commands["scopes"]) == {"personal", "team", "groupChat"}
    titles = [c["title"] for c in commands["commands"]]
    assert len(titles) == 10 and titles[0] == "channel-list" and "user-get" in titles
    from integration.engine import registry
    from integration.teams.access import command_groups

    reg = registry.default_registry()
    assert all(command_groups(reg.get(t)) == {"read"} for t in titles)  # read-only, runnable by analysts
    assert all(len(c["description"]) <= 128 and c["description"] for c in commands["commands"])
    assert manifest["validDomains"] == ["soar-bot.contoso.example:8443"]
    # without a public URL: no domain, no calling (unless asked)
    m = json.loads(zipfile.ZipFile(tmp_path / "app.zip").read("manifest.json"))
    assert cli.main(["--config", conf, "app-package", "--out", str(tmp_path / "b.zip"), "--calling"],
                    out=lambda s: None, err=lambda s: None) == 0
    b = json.loads(zipfile.ZipFile(tmp_path / "b.zip").read("manifest.json"))
    assert b["validDomains"] == [] and b["bots"][0]["supportsCalling"] is True and m["bots"][0]["commandLists"]


def test_commands_are_capped_at_ten(schema):
    from integration.engine import registry

    cmds = app_package.command_list(registry.default_registry(), limit=50)
    assert len(cmds) > 10
    m = app_package.build_manifest(bot_id="9c2e4b6d-8f1a-4d3c-b5e7-2a4c6e8f0b1d", commands=cmds)
    assert len(m["bots"][0]["commandLists"][0]["commands"]) == 10 and errors(schema, m) == []
