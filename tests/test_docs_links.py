"""The README and the pages under docs/ hold together: the README starts with the two commands
(the demo, and the test command `.ci/run` runs), links every page of docs/, and every relative
link and every repository path a page names points at something that exists."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

DEMO = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/msteams demo"
TESTS = ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q"
         " && MSTEAMS_TEST_STORE=redis .venv/bin/python -m pytest -q")

FENCE = re.compile(r"^ *```.*?^ *```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A path into the repository named in inline code: `integration/...`, `fake_tenant/...`, ...
REPO_PATH = re.compile(r"`((?:integration|fake_tenant|benchmarks|tests|docs)/[\w./-]*)`")


def _prose(text: str) -> str:
    """The page without its code blocks (a `[x](y)` in an example is not a link)."""
    return FENCE.sub("", text)


def _links(text: str) -> list[str]:
    # inline code that holds a `[x](y)` is an example too; other code spans may be a link's text
    return LINK.findall(CODE_SPAN.sub(lambda m: "" if "](" in m.group(0) else m.group(0), _prose(text)))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens; -1, -2, ... for repeats."""
    anchors, counts = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(page.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        anchors.add(f"{slug}-{n}" if n else slug)
    return anchors


def _through_symlink(target: Path) -> bool:
    """Whether the path, or a folder on it, is a symlink (GitHub shows those as files, not follows them)."""
    rel = Path(os.path.normpath(target.absolute())).relative_to(ROOT)
    return any((ROOT / part).is_symlink() for part in (rel, *rel.parents) if part != Path("."))


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```\w*\n(.*?)^```", text, re.M | re.S)


def test_the_readme_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    blocks = _code_blocks(text)
    assert blocks[:2] == [DEMO + "\n", TESTS + "\n"]
    # nothing but the title and the two commands' one-line introductions comes before them
    before = text[: text.index(TESTS)]
    assert "\n## " not in before, "the two commands must come before any section"


def test_the_readme_test_command_is_what_ci_runs():
    """CI (.ci/run) runs each step of the README's test command, in the same order (it may run more
    between them, such as lint-imports, and split them over lines)."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    ci_steps = [step.strip() for line in ci for step in line.split("&&")]
    readme_steps = [step.strip() for step in TESTS.split("&&")]
    position = 0
    for step in readme_steps:
        assert step in ci_steps[position:], f".ci/run does not run {step!r} (after the steps before it)"
        position = ci_steps.index(step, position) + 1


def test_the_readme_links_every_docs_page():
    links = {(README.parent / link.split("#")[0]).resolve() for link in _links(README.read_text(encoding="utf-8"))}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in links]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_the_readme_stays_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 100


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for link in _links(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", link, re.I):  # https:, mailto: ...
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path) if path else page
            where = f"{page.relative_to(ROOT)}: ({link})"
            if not target.exists():
                broken.append(f"{where}: no such file")
            elif not Path(os.path.normpath(target.absolute())).is_relative_to(ROOT):
                broken.append(f"{where}: outside the repository")
            elif _through_symlink(target):
                broken.append(f"{where}: through a symlink (GitHub does not follow them): link the real path")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{where}: no heading #{anchor} in {target.name}")
    assert not broken, "\n".join(broken)


# docs/architecture.md is written by its own owner together with the code it describes, and may
# name a file of work in progress (tests/store/test_store_contract.py when this test was written); its
# links are checked above like every page's.
PATHS_CHECKED = [page for page in PAGES if page.name != "architecture.md"]


def test_every_repository_path_a_page_names_exists():
    """Each `integration/...`, `fake_tenant/...`, `benchmarks/...`, `tests/...` or `docs/...` a page
    names in inline code exists (the code moved into folders once; the pages must follow it)."""
    missing = []
    for page in PATHS_CHECKED:
        for path in REPO_PATH.findall(page.read_text(encoding="utf-8")):
            if not (ROOT / path.rstrip("/.")).exists():
                missing.append(f"{page.relative_to(ROOT)}: `{path}`")
    assert not missing, "\n".join(missing)
