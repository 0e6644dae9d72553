"""The architecture as issue 23 states it, checked: the import contracts hold (`lint-imports`,
as .ci/run runs it), the start-up contract type counts only eager imports, no import cycle in
either package, the fake tenant imports nothing of the product, and every stage says its job."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
LINT = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")


def test_the_import_contracts_hold():
    assert LINT, "lint-imports is not installed (the test extra installs import-linter)"
    r = subprocess.run([LINT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout, r.stdout[-2000:]


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's strongly connected components of the direct-import graph, those of 2+ modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return found


@pytest.mark.parametrize("package", ["integration", "fake_tenant"])
def test_no_import_cycle(package):
    graph = grimp.build_graph(package)
    assert _strongly_connected(graph) == []


def test_the_fake_tenant_imports_nothing_of_the_product():
    offenders = []
    for path in sorted((REPO / "fake_tenant").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names
                          if n == "integration" or n.startswith("integration.")]
    assert offenders == []


def test_every_stage_says_its_job():
    for init in sorted((REPO / "integration").rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 80 and "TODO" not in doc, f"{init.relative_to(REPO)} does not say its job"


def test_every_module_says_its_job():
    missing = [str(p.relative_to(REPO)) for p in sorted((REPO / "integration").rglob("*.py"))
               if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert missing == []


def test_eager_forbidden_counts_module_level_imports_and_not_deferred_ones(tmp_path):
    """The start-up contract type: an eager chain to the forbidden library breaks it, with the
    chain named; the same import inside a function (or under TYPE_CHECKING) does not."""
    pkg = tmp_path / "demo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""x"""\n')
    (pkg / "cli.py").write_text("from demo_pkg import core\n")
    (pkg / "core.py").write_text(textwrap.dedent("""\
        TYPE_CHECKING = False
        if TYPE_CHECKING:
            import json
        def serve():
            import json
            return json
        """))
    (tmp_path / ".importlinter").write_text(textwrap.dedent(f"""\
        [importlinter]
        root_package = demo_pkg
        include_external_packages = True
        contract_types =
            eager_forbidden: tools.import_contracts.EagerForbiddenContract

        [importlinter:contract:lean]
        name = lean
        type = eager_forbidden
        source_modules = demo_pkg.cli
        forbidden_modules = json
        """))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")

    def lint():
        return subprocess.run([LINT, "--config", str(tmp_path / ".importlinter")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    r = lint()
    assert r.returncode == 0 and "1 kept, 0 broken" in r.stdout, r.stdout + r.stderr
    (pkg / "core.py").write_text("import json\n")
    r = lint()
    assert r.returncode == 1 and "demo_pkg.core -> json" in r.stdout, r.stdout + r.stderr
