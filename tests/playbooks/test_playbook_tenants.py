"""A playbook's `tenant:` (for all its steps, or per step, as a name or a template): each step
runs with that tenant's runtime; a run with no tenant where a step names none is refused
before anything is recorded; a bad tenant name is a playbook problem with its line."""
from __future__ import annotations

import json

import pytest

from integration.engine.errors import FileError
from tenant_helpers import OTHER, cli, write_profiles

BOOK = """\
name: tenants-demo
inputs:
  who: {{type: string, required: true}}
{top}steps:
  - id: teams
    command: team-list
{step_tenant}  - id: users
    command: user-list
    args: {{limit: 2}}
"""


def book(tmp_path, top: str = "", step_tenant: str = "") -> str:
    p = tmp_path / "tenants-demo.yml"
    p.write_text(BOOK.format(top=top, step_tenant=step_tenant))
    return str(p)


def test_a_run_with_no_tenant_where_a_step_names_none_is_refused_before_it_is_recorded(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    code, out, err = cli(path, "playbook", "run", book(tmp_path), "--input", "who=x")
    assert code == 2 and "tenant profiles (contoso, fabrikam)" in err and "teams, users" in err, err
    code, out, err = cli(path, "-o", "json", "playbook", "runs")
    assert code == 0 and json.loads(out) == [], out


def test_the_playbooks_tenant_runs_every_step_against_that_profile(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    code, out, err = cli(path, "-o", "json", "playbook", "run", book(tmp_path, top="tenant: ${inputs.who}\n"),
                         "--input", "who=contoso")
    assert code == 0, err
    steps = {s["id"]: s for s in json.loads(out)["steps"]}
    assert steps["teams"]["status"] == "ok" and steps["users"]["status"] == "ok"


def test_a_steps_tenant_wins_and_a_token_of_another_tenant_fails_that_step(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    code, out, err = cli(path, "-o", "json", "--tenant", "contoso", "playbook", "run",
                         book(tmp_path, step_tenant="    tenant: fabrikam\n"), "--input", "who=x")
    result = json.loads(out)
    steps = {s["id"]: s for s in result["steps"]}
    assert code == 3 and steps["teams"]["status"] == "failed", err
    assert f"not '{OTHER}'" in steps["teams"]["error"]  # fabrikam's profile refused contoso's token


def test_the_plan_shows_each_steps_tenant(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    code, out, err = cli(path, "--tenant", "contoso", "playbook", "run", "--dry-run",
                         book(tmp_path, step_tenant="    tenant: fabrikam\n"), "--input", "who=x")
    assert code == 0 and "tenant: fabrikam" in err + out


@pytest.mark.parametrize("text", ["tenant: Not A Name\n", "tenant: ${inputs.nope}\n"])
def test_a_bad_tenant_is_a_playbook_problem_with_its_line(tmp_path, text):
    from integration.playbooks.loader import load

    with pytest.raises(FileError) as e:
        load(book(tmp_path, top=text))
    assert e.value.line == 4 and "tenant" in e.value.message
