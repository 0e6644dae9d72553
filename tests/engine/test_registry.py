"""The registry: the shipped commands.yml loads and cross-checks; broken files give errors
naming the file, command, field and line; the full check is cached per content (JSON, 0600, in
XDG_CACHE_HOME), and a warm load imports neither PyYAML nor jsonschema."""
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from registry_helpers import KINDS, SHIPPED, write_broken

from integration.engine import arguments, registry
from integration.engine.errors import FileError


def write(tmp_path, text):
    p = tmp_path / "commands.yml"
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_registry_loads_with_handlers_cross_checked():
    reg = registry.load(check_handlers=True)
    assert {"chat-create", "message-send-to-chat", "ring-user", "channel-list", "cache-reset"} <= set(reg.names())
    assert reg.get("microsoft-teams-chat-create").name == "chat-create"
    assert reg.get("ring-user").flow_names == ("app",)
    assert reg.get("message-send-to-chat").flow_names == ("delegated",)


def test_unknown_field_names_command_field_and_line(tmp_path):
    p = write(tmp_path, """\
        commands:
          ok-cmd:
            description: fine
            local: true
            handler: admin.cache_show
            arguments: {type: object, properties: {}}
          bad-cmd:
            description: broken
            flows: {app: [User.Read.All]}
            request: {method: GET, path: /users}
            arguments: {type: object, properties: {}}
            colour: blue
        """)
    with pytest.raises(FileError) as e:
        registry.load(p)
    msg = str(e.value)
    assert f"{p}:12:" in msg and "bad-cmd" in msg and "colour" in msg  # the unknown field's own line


def test_required_argument_must_exist(tmp_path):
    p = write(tmp_path, """\
        commands:
          c:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            arguments: {type: object, properties: {a: {type: string, description: x}}, required: [b]}
        """)
    with pytest.raises(FileError, match=r"'b' is not an argument"):
        registry.load(p)


def test_handler_named_but_missing_is_a_load_error(tmp_path):
    p = write(tmp_path, """\
        commands:
          c:
            description: d
            flows: {app: []}
            handler: chats.no_such_handler
            arguments: {type: object, properties: {}}
        """)
    with pytest.raises(FileError, match="no handler 'chats.no_such_handler'"):
        registry.load(p, check_handlers=True)


def test_handler_without_command_is_a_load_error(tmp_path):
    # a registry that omits ring-user leaves calls.ring_user orphaned
    p = write(tmp_path, """\
        commands:
          c:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            arguments: {type: object, properties: {}}
        """)
    with pytest.raises(FileError, match="handler\\(s\\) with no command: .*calls.ring_user"):
        registry.load(p, check_handlers=True)


def test_bad_yaml_reports_line(tmp_path):
    p = write(tmp_path, "commands:\n  c: [unclosed\n")
    with pytest.raises(FileError) as e:
        registry.load(p)
    assert "not valid YAML" in str(e.value) and str(p) in str(e.value)


def test_duplicate_alias_refused(tmp_path):
    p = write(tmp_path, """\
        commands:
          a:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            aliases: [same]
            arguments: {type: object, properties: {}}
          b:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            aliases: [same]
            arguments: {type: object, properties: {}}
        """)
    with pytest.raises(FileError, match="'same' is already used by 'a'"):
        registry.load(p)


# ---------------------------------------------------------------- every kind of breakage, with file and line

@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_broken_registry_is_a_file_error_with_line(tmp_path, kind):
    p, line, fragment = write_broken(tmp_path, kind)
    with pytest.raises(FileError) as e:
        registry.load(p)
    assert e.value.exit_code == 2 and e.value.line == line
    assert str(e.value).startswith(f"{p}:{line}: ") and fragment in str(e.value)


def test_a_partial_load_no_longer_exists(tmp_path):
    """validate=False / check_handlers=False used to skip checks: now every load is full."""
    p, line, _ = write_broken(tmp_path, "missing-handler")
    with pytest.raises(FileError, match=f":{line}: .*no handler"):
        registry.load(p, validate=False, check_handlers=False)


def _small(tmp_path, body: str, name: str = "commands.yml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body), encoding="utf-8")
    return p


@pytest.mark.parametrize("body,line,fragment", [
    # a duplicated key inside a command (PyYAML would keep the last silently)
    ("""\
     commands:
       c:
         description: d
         description: again
     """, 4, "duplicate key 'description' (first at line 3)"),
    ("""\
     commands: {}
     extra: 1
     """, 2, "unknown top-level key 'extra'"),
    ("""\
     commands:
       c:
         description: d
         flows: {app: []}
         request: {method: GET, path: /users}
         arguments: {type: object, properties: {1: {type: string, description: x}}}
     """, 6, "key 1 is not a string"),
    ("""\
     commands:
       c:
         description: d
         flows: {app: []}
         request: {method: GET, path: /users}
         example: 2024-01-01
         arguments: {type: object, properties: {}}
     """, 6, "a value of type date is not allowed"),
    ("""\
     commands:
       Bad_Name:
         description: d
     """, 2, "command name 'Bad_Name'"),
    ("""\
     commands:
       c:
         description: d
         flows: {app: []}
         request: {method: GET, path: /users}
         arguments:
           type: object
           properties:
             kind: {type: string, enum: [a, b], default: c, description: x}
     """, 9, "field 'arguments.properties.kind.default'"),
    ("""\
     commands:
       c:
         description: d
         flows: {app: []}
         request: {method: GET, path: /users}
         arguments:
           type: object
           properties:
             x: {$ref: "https://example.com/schema.json", description: x}
     """, 9, "leaves the arguments schema"),
    ("""\
     commands:
       c:
         description: d
         flows: {app: []}
         resolve:
           channel_id: {kind: channel, from: channel}
         request: {method: GET, path: "/teams/x/channels/{channel_id}"}
         arguments: {type: object, properties: {channel: {type: string, description: x}}}
     """, 6, "a channel needs 'team'"),
    ("""\
     commands:
       c:
         description: d
         flows: {app: []}
         request: {method: POST, path: /chats, body: {topic: "{title}"}}
         arguments: {type: object, properties: {}}
     """, 5, "'{title}' is not an argument"),
    ("""\
     commands:
       c:
         description: d
         flows: {app: []}
         request: {method: GET, path: /users}
         arguments: {type: object, properties: {}}
         outputs: {title: "Users named {name}"}
     """, 7, "'{name}' is not an argument"),
    ("commands:\n  c: [unclosed\n", 3, "not valid YAML"),
    ("", 1, "expected a top-level mapping 'commands:'"),
])
def test_more_broken_registries(tmp_path, body, line, fragment):
    p = _small(tmp_path, body)
    with pytest.raises(FileError) as e:
        registry.load(p)
    assert f"{p}:{line}: " in str(e.value) and fragment in str(e.value), str(e.value)


def test_not_utf8_names_the_line(tmp_path):
    p = tmp_path / "commands.yml"
    p.write_bytes(SHIPPED.encode()[:200] + b"\n  \xff\n")
    with pytest.raises(FileError, match=r":\d+: not UTF-8 text \(byte 0xff\)"):
        registry.load(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileError, match="missing.yml: cannot read"):
        registry.load(tmp_path / "missing.yml")


# ---------------------------------------------------------------- the cache of checked content

def _cache_files(home):
    d = home / "msteams-soar"
    return sorted(d.glob("registry-*.json")) if d.is_dir() else []


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def test_checked_content_is_cached_as_private_json(tmp_path, cache_home):
    p = tmp_path / "commands.yml"
    p.write_text(SHIPPED, encoding="utf-8")
    first = registry.load(p)
    [f] = _cache_files(cache_home)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    data = json.loads(f.read_text(encoding="utf-8"))
    assert data["commands"]["chat-create"]["handler"] == "chats.chat_create"
    assert not [n for n in os.listdir(f.parent) if n.endswith(".tmp")]  # written by rename
    second = registry.load(p)
    assert second.names() == first.names() and second.get("chat-create") == first.get("chat-create")
    # another byte: another key, checked again
    p.write_text(SHIPPED + "# edited\n", encoding="utf-8")
    registry.load(p)
    assert len(_cache_files(cache_home)) == 2


def test_cached_registry_equals_a_fresh_check(cache_home):
    fresh = registry.load(cache=False)
    registry.load()  # fills the cache
    warm = registry.load()
    assert _cache_files(cache_home)
    assert [(s.name, s.bare_ok) for s in warm] == [(s.name, s.bare_ok) for s in fresh]
    assert all(warm.get(n) == fresh.get(n) for n in fresh.names())


def test_broken_content_is_never_cached(tmp_path, cache_home):
    p, _, _ = write_broken(tmp_path, "unknown-field")
    for _ in range(2):
        with pytest.raises(FileError):
            registry.load(p)
    assert _cache_files(cache_home) == []


@pytest.mark.parametrize("junk", [b"", b"{not json", b"\xff\xfe", b"[]", b'{"format": "other"}', b"[" * 100_000])
def test_a_corrupt_cache_is_ignored_and_rebuilt(tmp_path, cache_home, junk):
    p = tmp_path / "commands.yml"
    p.write_text(SHIPPED, encoding="utf-8")
    registry.load(p)
    [f] = _cache_files(cache_home)
    f.write_bytes(junk)
    assert "chat-create" in registry.load(p).names()
    assert json.loads(f.read_text(encoding="utf-8"))["commands"]


def test_a_cache_with_the_right_key_but_wrong_shape_is_rebuilt(tmp_path, cache_home):
    p = tmp_path / "commands.yml"
    p.write_text(SHIPPED, encoding="utf-8")
    registry.load(p)
    [f] = _cache_files(cache_home)
    data = json.loads(f.read_text(encoding="utf-8"))
    data["commands"]["chat-create"] = {"description": 42}  # what no check would have let through
    f.write_text(json.dumps(data), encoding="utf-8")
    assert registry.load(p).get("chat-create").handler == "chats.chat_create"


def test_an_unwritable_cache_dir_means_no_cache_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert "chat-create" in registry.load().names()


def test_cache_dir_follows_xdg_and_ignores_a_relative_one(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert registry.cache_dir() == tmp_path / "msteams-soar"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry.cache_dir() == tmp_path / "home" / ".cache" / "msteams-soar"


def test_old_cache_files_are_pruned(tmp_path, cache_home):
    for i in range(registry.CACHE_KEEP + 3):
        p = tmp_path / f"r{i}.yml"
        p.write_text(SHIPPED + f"# {i}\n", encoding="utf-8")
        registry.load(p)
    assert len(_cache_files(cache_home)) == registry.CACHE_KEEP


def test_a_warm_load_imports_neither_yaml_nor_jsonschema(cache_home):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    code = ("import sys; from integration.engine import registry; r = registry.load(); "
            "heavy = sorted(m for m in ('yaml', 'jsonschema', 'requests', 'msal') if m in sys.modules); "
            "print(len(r.names()), heavy)")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.returncode == 0 and "'yaml'" in first.stdout, first.stderr
    assert warm.returncode == 0 and warm.stdout.strip().endswith("[]"), warm.stdout + warm.stderr


def test_msteams_registry_names_another_file(tmp_path, monkeypatch):
    p = tmp_path / "site-commands.yml"
    p.write_text(SHIPPED.replace("  cache-show:\n", "  cache-show:\n    aliases: [store-show]\n", 1), encoding="utf-8")
    monkeypatch.setenv("MSTEAMS_REGISTRY", str(p))
    reg = registry.default_registry()
    assert reg.source == str(p) and reg.get("store-show").name == "cache-show"


# ---------------------------------------------------------------- a call without arguments needs no jsonschema

def test_bare_call_fast_path_matches_full_validation():
    reg = registry.default_registry()
    for spec in reg:
        if spec.bare_ok:
            fast = arguments.validate(spec, {})
            slow = arguments.validate(spec.replace(arguments=spec.arguments), {})  # replace drops bare_ok
            assert fast == slow, spec.name
    assert reg.get("cache-show").bare_ok and not reg.get("chat-create").bare_ok  # chat-create needs member
    assert not reg.get("cache-show").replace(arguments=reg.get("cache-show").arguments).bare_ok


def test_spec_is_read_only():
    spec = registry.default_registry().get("cache-show")
    with pytest.raises(AttributeError):
        spec.name = "x"


def test_text_beyond_ascii_is_cached_exactly(tmp_path, cache_home):
    p = tmp_path / "commands.yml"
    p.write_text(SHIPPED.replace("Show what the context store holds", "Show what the store (Zo\u00eb \U0001F600) holds", 1),
                 encoding="utf-8")
    first = registry.load(p).get("cache-show").description
    assert "(Zo\u00eb \U0001F600)" in first and _cache_files(cache_home)
    assert registry.load(p).get("cache-show").description == first


_RULED = """\
commands:
  c:
    description: d
    flows: {app: []}
    request: {method: GET, path: /users}
    arguments:
      type: object
      properties:
        a: {type: string, description: x, aliases: [a_name]}
        b: {type: string, description: x}
        n: {type: integer, default: 5, description: x}
"""


@pytest.mark.parametrize("rules,line,fragment", [
    ("      anyOf: [{required: [a]}, {required: [b]}]\n", 12,
     "field 'arguments.anyOf': rules between arguments go in arguments.allOf"),
    ("      allOf:\n        - {anyOf: [{required: [a]}, {type: object}]}\n", 13,
     "field 'arguments.allOf.0': a rule between arguments is {dependentRequired"),
    ("      allOf:\n        - {not: {required: [a]}}\n", 13, "a rule between arguments is"),
    ("      allOf:\n        - {dependentRequired: {a: [c]}}\n", 13,
     "field 'arguments.allOf.0': 'c' is not an argument"),
    ("      allOf:\n        - {anyOf: [{required: [a_name]}, {required: [b]}]}\n", 13,
     "'a_name' is not an argument (a rule names arguments, not their aliases)"),
    ("      allOf:\n        - {not: {required: [a, n]}}\n", 13, "'n' has a default, so it is always given"),
    ("      allOf:\n        - {dependentSchemas: {a: {not: {required: [b]}}}}\n", 13, "a rule between arguments is"),
    ("      allOf:\n        - {dependentSchemas: {a: {anyOf: [{required: [c]}]}}}\n", 13, "'c' is not an argument"),
])
def test_a_rule_between_arguments_the_validation_cannot_keep_is_a_load_error(tmp_path, rules, line, fragment):
    p = _small(tmp_path, _RULED + rules)
    with pytest.raises(FileError) as e:
        registry.load(p)
    assert f"{p}:{line}: command 'c', " in str(e.value) and fragment in str(e.value), str(e.value)


def test_the_shipped_rules_between_arguments_are_worded_for_help():
    from integration.engine.arguments import rules

    reg = registry.load()
    assert rules(reg.get("channel-delete")) == [
        "name the channel (with its team), or give incident_id to close the incident's mirrored channel",
        "team is required with channel (Graph names a channel within its team)"]  # a dependentRequired's: of its argument
    assert rules(reg.get("message-list"))[:3] == [  # two rules saying the same, said once
        "give a chat, or a team and a channel (or conversation_id)",
        "give a conversation, or a chat, or a team and a channel: one of them",
        "give either a chat, or a team and a channel, not both"]
    assert rules(reg.get("team-list")) == []
