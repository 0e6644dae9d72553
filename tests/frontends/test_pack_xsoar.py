"""`msteams pack xsoar --out DIR` (issue 26): the Cortex XSOAR content pack generated from
commands.yml. The integration YAML declares every command under XSOAR's names with XSOAR's
argument names, required/default/predefined from the JSON Schema and the context outputs; a
command added to the registry appears without an edit; the generated Python compiles and imports
only what XSOAR provides; it runs here against a live `msteams serve` on the fake tenant with a
stand-in for XSOAR's `demistomock` and `CommonServerPython` (a few lines of ours): chat-create, a
send that a retried task does not send twice, an error with our hint, test-module, and
MicrosoftTeamsAsk answered by a simulated click completing the task through its entitlement; the
instance's tenant parameter names the tenant profile of a `msteams serve` with several tenants
(X-Msteams-Tenant), a bad one refused before any request.
`demisto-sdk validate` checks the pack when `.venv-demisto` holds it (`.ci/run` installs it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from pack_helpers import (chat_messages, imports_of, no_requests, registry_with_extra_command, team_ids,
                          tenants_config_and_key)
from service_helpers import REPO, Service, cli, make_key

PACK = "Packs/MicrosoftTeamsSOAR"
INTEG = f"{PACK}/Integrations/MicrosoftTeamsSOAR/MicrosoftTeamsSOAR"
SCRIPT = f"{PACK}/Scripts/MicrosoftTeamsAsk/MicrosoftTeamsAsk"
CONOR = "conor.obrien@contoso.example"
ZOE = "zoe.muller@contoso.example"
XSOAR_PROVIDES = {"demistomock", "CommonServerPython", "requests", "hashlib", "json", "re"}
DEMISTO_SDK = Path(REPO) / ".venv-demisto" / "bin" / "demisto-sdk"


def generate(out: Path) -> Path:
    from integration.frontends import cli as cli_mod

    said: list[str] = []
    assert cli_mod.main(["pack", "xsoar", "--out", str(out)], out=said.append, err=said.append) == 0, said
    assert said and "Packs/MicrosoftTeamsSOAR" in said[-1]
    return out


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("xsoar"))


def integration(pack: Path) -> dict:
    return yaml.safe_load((pack / f"{INTEG}.yml").read_text())


def test_the_pack_has_xsoars_layout(pack):
    for rel in ("pack_metadata.json", "README.md", ".pack-ignore", ".secrets-ignore",
                "Integrations/MicrosoftTeamsSOAR/MicrosoftTeamsSOAR.yml", "Integrations/MicrosoftTeamsSOAR/MicrosoftTeamsSOAR.py",
                "Integrations/MicrosoftTeamsSOAR/README.md", "Integrations/MicrosoftTeamsSOAR/MicrosoftTeamsSOAR_description.md",
                "Integrations/MicrosoftTeamsSOAR/MicrosoftTeamsSOAR_image.png", "Scripts/MicrosoftTeamsAsk/MicrosoftTeamsAsk.yml",
                "Scripts/MicrosoftTeamsAsk/MicrosoftTeamsAsk.py", "Scripts/MicrosoftTeamsAsk/README.md"):
        assert (pack / PACK / rel).is_file(), rel
    meta = json.loads((pack / PACK / "pack_metadata.json").read_text())
    assert meta["name"] != "Microsoft Teams" and "Messaging" in meta["categories"]
    assert (pack / f"{INTEG}_image.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_command_under_xsoars_names_with_arguments_and_outputs(pack):
    from integration.engine import registry
    from integration.frontends.docs import xsoar_commands

    reg = registry.default_registry()
    doc = integration(pack)
    assert doc["commonfields"]["id"] == "Microsoft Teams SOAR" and doc["script"]["subtype"] == "python3"
    params = {p["name"]: p for p in doc["configuration"]}
    assert params["url"]["type"] == 0 and params["credentials"]["type"] == 9 and params["credentials"]["hiddenusername"]
    tenant = params["tenant"]  # optional: a msteams serve with one tenant needs none
    assert (tenant["type"], tenant["required"], tenant["display"]) == (
        0, False, "Tenant profile (msteams serve with several tenants)")
    assert "| Tenant profile (msteams serve with several tenants) |" in (
        pack / PACK / "Integrations/MicrosoftTeamsSOAR/README.md").read_text()
    cmds = {c["name"]: c for c in doc["script"]["commands"]}
    for spec in reg:  # every command, under its name or an alias (XSOAR's names, some in both of its integrations)
        assert {spec.name, *spec.aliases} & set(cmds), spec.name
    xsoar = {c["name"]: c for cmds_ in xsoar_commands()["integrations"].values() for c in cmds_}
    # every XSOAR command we have an alias (or name) for is declared under XSOAR's name, with its arguments
    for name, x in xsoar.items():
        if reg.get(name) is None:
            continue
        assert name in cmds, name
        declared = {a["name"] for a in cmds[name].get("arguments", [])}
        assert set(x["arguments"]) <= declared, (name, set(x["arguments"]) - declared)
        outputs = {o["contextPath"] for o in cmds[name].get("outputs", [])}
        assert set(x["outputs"]) <= outputs, (name, set(x["outputs"]) - outputs)
    chat = cmds["microsoft-teams-chat-create"]
    args = {a["name"]: a for a in chat["arguments"]}
    assert args["member"]["required"] and args["member"]["isArray"]
    assert args["chat_type"]["predefined"] == ["group", "oneOnOne"] and args["chat_type"]["defaultValue"] == "group"
    assert all(o["description"] and o["type"] for o in chat["outputs"])
    # XSOAR's argument name where the registry has it as an alias (channel_name for channel)
    create = {a["name"] for a in cmds["microsoft-teams-create-channel"]["arguments"]}
    assert "channel_name" in create and "channel" not in create
    # ours where XSOAR has no such command; booleans are predefined true/false; destructive ones need confirming
    ask = {a["name"]: a for a in cmds["ask"]["arguments"]}
    assert ask["question"]["required"] and ask["reason"]["predefined"] == ["true", "false"]
    assert cmds["microsoft-teams-team-delete"].get("execution") is True
    assert "execution" not in cmds["microsoft-teams-chat-create"]
    # the rules between arguments (commands.yml's arguments.allOf), which XSOAR's form cannot hold, in the help
    assert cmds["microsoft-teams-list-messages"]["description"].endswith(
        "Rules: give a chat, or a team and a channel (or conversation_id); give a conversation, or a chat, or a "
        "team and a channel: one of them; give either a chat, or a team and a channel, not both; give no "
        "message_id with a chat: it lists a channel message's replies, and chat messages have no threads; with team, "
        "give channel, or conversation.")
    assert "Rules:" not in cmds["microsoft-teams-chat-create"]["description"]




def test_the_generated_python_compiles_and_imports_only_what_xsoar_provides(pack):
    for path in (f"{INTEG}.py", f"{SCRIPT}.py"):
        source = (pack / path).read_text()
        compile(source, path, "exec")
        assert imports_of(source) <= XSOAR_PROVIDES, (path, imports_of(source) - XSOAR_PROVIDES)
    script = yaml.safe_load((pack / f"{SCRIPT}.yml").read_text())
    names = {a["name"] for a in script["args"]}
    assert {"message", "option1", "option2", "additional_options", "persistent", "team_member", "user_id", "channel",
            "team", "task_id", "form_type", "adaptive_card"} <= names
    assert script["dependson"]["must"] == ["Microsoft Teams SOAR|||ask"]




def test_a_new_registry_command_appears_in_the_pack_without_edits(tmp_path, monkeypatch):
    registry_with_extra_command(tmp_path, monkeypatch)
    out = generate(tmp_path / "out")
    cmds = {c["name"]: c for c in integration(out)["script"]["commands"]}
    probe = cmds["pack-probe"]
    args = {a["name"]: a for a in probe["arguments"]}
    assert args["target"]["required"] and args["depth"]["predefined"] == ["shallow", "deep"]
    assert args["depth"]["defaultValue"] == "shallow"
    assert {o["contextPath"] for o in probe["outputs"]} == {"MicrosoftTeams.PackProbe.id", "MicrosoftTeams.PackProbe.depth"}
    assert '"pack-probe": "pack-probe"' in (out / f"{INTEG}.py").read_text()
    assert "### pack-probe" in (out / PACK / "Integrations/MicrosoftTeamsSOAR/README.md").read_text()


# ---- the forwarding code, run as XSOAR would, against a live msteams serve ----

class Xsoar:
    """Just enough of XSOAR's demistomock and CommonServerPython to run the generated code."""

    def __init__(self, monkeypatch, pack: Path, url: str, key: str):
        self.params = {"url": url, "credentials": {"identifier": "", "password": key}, "insecure": False,
                       "proxy": False}
        self.command, self.arguments = "", {}
        self.results, self.errors, self.entitlements = [], [], []
        demisto = types.ModuleType("demistomock")
        demisto.params = lambda: self.params
        demisto.command = lambda: self.command
        demisto.args = lambda: dict(self.arguments)
        demisto.incident = lambda: {"id": "42"}
        demisto.investigation = lambda: {"id": "42"}
        demisto.callingContext = {"context": {"TaskID": "3"}}
        demisto.results = self.results.append
        demisto.executeCommand = self.execute_command
        demisto.handleEntitlementForUser = lambda *a: self.entitlements.append(a)
        csp = types.ModuleType("CommonServerPython")

        class DemistoException(Exception):
            pass

        class CommandResults:
            def __init__(self, outputs=None, readable_output=None, raw_response=None, **kw):
                self.outputs, self.readable_output, self.raw_response = outputs, readable_output, raw_response

        csp.DemistoException, csp.CommandResults = DemistoException, CommandResults
        csp.return_results = self.results.append
        csp.return_error = self.errors.append
        csp.isError = lambda entry: isinstance(entry, dict) and entry.get("Type") == 4
        csp.__all__ = ["DemistoException", "CommandResults", "return_results", "return_error", "isError"]
        monkeypatch.setitem(sys.modules, "demistomock", demisto)
        monkeypatch.setitem(sys.modules, "CommonServerPython", csp)
        self.integration = self._load(pack / f"{INTEG}.py")
        self.script = self._load(pack / f"{SCRIPT}.py")

    @staticmethod
    def _load(path: Path) -> dict:
        ns = {"__name__": "xsoar_content"}
        exec(compile(path.read_text(), str(path), "exec"), ns)
        return ns

    def run(self, command: str, **args):
        """One command of the integration, as a war-room `!command` runs it (arguments as strings)."""
        self.command, self.arguments = command, args
        before_r, before_e = len(self.results), len(self.errors)
        self.integration["main"]()
        errors, results = self.errors[before_e:], self.results[before_r:]
        del self.errors[before_e:], self.results[before_r:]  # taken: what a script gets back
        if errors:
            return errors[0]
        [result] = results
        return result

    def execute_command(self, name: str, args: dict):
        if name == "addEntitlement":
            return [{"Type": 1, "Contents": "guid-7@42"}]
        assert args.pop("using-brand") == "Microsoft Teams SOAR"
        result = self.run(name, **args)
        return [result if isinstance(result, str) else {"Type": 1, "Contents": result.raw_response,
                                                        "EntryContext": result.outputs}]

    def run_script(self, **args):
        self.command, self.arguments = "", args
        before = len(self.results)
        self.script["main"]()
        return self.results[before:]




def test_the_integration_forwards_commands_to_msteams_serve(emu, cfg_file, tmp_path, monkeypatch, pack):
    key = make_key(cfg_file, "xsoar", "*")
    code, out, err = cli(cfg_file, "auth", "login")  # the delegated flow, for posting to a chat
    assert code == 0, err
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        x = Xsoar(monkeypatch, pack, svc.url, key)
        assert x.run("test-module") == "ok"
        r = x.run("microsoft-teams-chat-create", chat_type="group", member=f"{CONOR},{ZOE}", chat_name="IR-42 war room")
        [(path, chats)] = r.outputs.items()
        assert path == "MicrosoftTeams.ChatList(val.chatId && val.chatId == obj.chatId)"
        chat = chats[0] if isinstance(chats, list) else chats
        assert chat["topic"] == "IR-42 war room" and chat["chatId"] and r.readable_output and r.raw_response
        # a send, retried by XSOAR (the same incident, task and arguments): sent once
        for _ in range(2):
            r = x.run("microsoft-teams-message-send-to-chat", chat="IR-42 war room", content="Containment started")
            assert not isinstance(r, str), r
            assert "MicrosoftTeams.ChatList(val.chatId && val.chatId == obj.chatId)" in r.outputs
        assert chat_messages(emu, "Containment started") == 1
        # an error: our message and hint, through return_error
        err = x.run("microsoft-teams-chat-create", member="nobody.here@contoso.example")
        assert isinstance(err, str) and "nobody.here" in err and "HTTP 404" in err, err
        # a key that is refused
        x.params["credentials"]["password"] = "mst_" + "A" * 43
        assert "unauthorized" in x.run("test-module")
        assert "unauthorized" in x.run("microsoft-teams-chat-list")


def test_the_tenant_parameter_names_the_tenant_profile(tenants3, tmp_path, monkeypatch, pack):
    cfg, key = tenants_config_and_key(tenants3, tmp_path)
    team = "MicrosoftTeams.Team(val.id && val.id == obj.id)"
    with Service(cfg, tmp_path, "--port", "0") as svc:
        x = Xsoar(monkeypatch, pack, svc.url, key)
        for name in ("fabrikam", "contoso"):  # X-Msteams-Tenant: each tenant's own teams
            x.params["tenant"] = name
            r = x.run("team-list")
            assert not isinstance(r, str), r
            teams = r.outputs[team] if isinstance(r.outputs[team], list) else [r.outputs[team]]
            assert {t["id"] for t in teams} == team_ids(tenants3, name), name
        # none: no header, refused by a service with several tenants, through return_error
        for empty in ("", None):
            x.params["tenant"] = empty
            err = x.run("team-list")
            assert isinstance(err, str) and "(tenant_required, HTTP 400)" in err and "X-Msteams-Tenant" in err, err
    # a bad value: refused before any request
    sent = no_requests(monkeypatch)
    x.params["tenant"] = "Fabrikam Ltd"
    for command in ("team-list", "test-module"):
        err = x.run(command)
        assert isinstance(err, str) and "'Fabrikam Ltd' is not a tenant profile name" in err, err
    assert sent == []


def test_microsoftteamsask_is_answered_by_a_click_and_completes_the_task(emu, cfg_file, tmp_path, monkeypatch, pack):
    key = make_key(cfg_file, "xsoar-ask", "*")
    try:
        with Service(cfg_file, tmp_path, "--port", "0", "--bot") as svc:
            x = Xsoar(monkeypatch, pack, svc.url, key)
            [entries] = x.run_script(message="Isolate host WS-042?", team_member=CONOR, option1="Isolate",
                                     option2="Wait", task_id="7", persistent="false")
            [entry] = entries
            assert entry["Type"] == 1, entry
            row = entry["Contents"]
            row = row[0] if isinstance(row, list) else row
            assert row["options"] == ["Isolate", "Wait"] and row["status"] == "open"
            assert row["xsoarTask"] == {"entitlement": "guid-7@42", "investigationId": "42", "taskId": "7",
                                        "persistent": False}
            assert x.entitlements == []
            code, out, err = cli(cfg_file, "emulator", "user-clicks", "--user", CONOR, "--question", row["id"],
                                 "--choice", "Isolate")
            assert code == 0, err
            r = x.run("ask-status", id=row["id"])
            [(path, status)] = r.outputs.items()
            assert path.startswith("MicrosoftTeams.Ask(")
            status = status[0] if isinstance(status, list) else status
            assert (status["status"], status["answer"]) == ("answered", "Isolate")
            assert x.entitlements == [("42", "guid-7@42", "Conor O'Brien", "Isolate", "7")]
            # no recipient: XSOAR's own refusal
            assert x.run_script(message="x") == [] and "team_member" in x.errors[-1]
            assert len(x.entitlements) == 1
    finally:
        emu.teams.register(None)


# ---- demisto-sdk ----

MAKE_CONFIG = r"""
import pathlib, re, sys, tomllib
import demisto_sdk
base = pathlib.Path(demisto_sdk.__file__).parent / "commands" / "validate"
cfg = tomllib.loads((base / "sdk_validation_config.toml").read_text())
offline = re.compile(r"self\.graph|using_graph|graph_interface|dockerhub|is_image_exist|requests\.|latest_tag|"
                     r"get_latest|creation_date|is_latest|get_remote|git_util|GitUtil|remote")
skip = {m.group(1) for f in (base / "validators").rglob("*.py")
        if offline.search(f.read_text()) and (m := re.match(r"([A-Z]+[0-9]+)_", f.name))}
codes = ", ".join(f'"{c}"' for c in cfg["path_based_validations"]["select"] if c not in skip)
pathlib.Path(sys.argv[1]).write_text(f"ignorable_errors = []\n[path_based_validations]\nselect = [{codes}]\n"
                                     f"warning = []\n[use_git]\nselect = [{codes}]\nwarning = []\n")
"""


def _content_repo(tmp_path: Path, pack: Path) -> Path:
    repo = tmp_path / "content"
    shutil.copytree(pack / PACK, repo / PACK)
    (repo / "Config").mkdir()
    (repo / "Config/approved_categories.json").write_text('{"approved_list": ["Messaging"]}')
    (repo / "Config/approved_usecases.json").write_text('{"approved_list": []}')
    (repo / "Config/approved_tags.json").write_text('{"approved_list": {"common": [], "xsoar": [], '
                                                    '"marketplacev2": [], "xpanse": []}}')
    return repo


def _validate(repo: Path, *extra: str) -> subprocess.CompletedProcess:
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run(git + ["init", "-q", str(repo)], check=True)
    subprocess.run(git + ["-C", str(repo), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(repo), "commit", "-qm", "pack", "--allow-empty"], check=True)
    env = dict(os.environ, DEMISTO_SDK_IGNORE_CONTENT_WARNING="1",
               NO_COLOR="1", DEMISTO_SDK_SKIP_VERSION_CHECK="1")
    return subprocess.run([str(DEMISTO_SDK), "validate", "-i", PACK, *extra], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.skipif(not DEMISTO_SDK.exists(),
                    reason="demisto-sdk is not installed in .venv-demisto (.ci/run installs it: "
                           "python3 -m venv .venv-demisto && .venv-demisto/bin/pip install demisto-sdk)")
def test_demisto_sdk_validate_accepts_the_pack(tmp_path, pack):
    repo = _content_repo(tmp_path, pack)
    config = tmp_path / "offline.toml"
    subprocess.run([str(DEMISTO_SDK.parent / "python"), "-c", MAKE_CONFIG, str(config)], check=True)
    for extra in ((), ("--config-path", str(config))):  # its default checks, then all that run offline
        r = _validate(repo, *extra)
        assert r.returncode == 0 and "All validations passed" in r.stdout + r.stderr, (extra, r.stdout[-4000:],
                                                                                      r.stderr[-4000:])
    # and it does check: a pack without README is refused (PA128)
    (repo / PACK / "README.md").unlink()
    r = _validate(repo)
    assert r.returncode != 0 and "PA128" in r.stdout + r.stderr
