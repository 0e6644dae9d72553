"""An import-linter contract type for start-up cost: ``eager_forbidden`` is ``forbidden``
counting only the imports that run when a module is imported (module level, class bodies),
not those inside functions, which run when called, nor those under ``if TYPE_CHECKING:``.

The CLI defers heavy libraries behind function-level imports (the bot endpoint's Starlette
and uvicorn, Redis for a shared store): a command that never calls such a function never pays
for it. Plain ``forbidden`` counts every import, so it cannot tell a deferred door from a cost
every command pays; this contract can, and still names the chain when an eager import breaks it.
"""
from __future__ import annotations

import ast
import functools
import importlib.util

from importlinter.contracts.forbidden import ForbiddenContract


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@functools.cache
def eager_import_lines(module: str) -> frozenset[int] | None:
    """Line numbers of the import statements that run when ``module`` is imported; None when its
    source cannot be found (then all its imports count)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), spec.origin)
    lines: set[int] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                lines.add(child.lineno)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs when called, not when imported
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]))
            else:
                visit(child)

    visit(tree)
    return frozenset(lines)


def is_eager(graph, importer: str, imported: str) -> bool:
    lines = eager_import_lines(importer)
    if lines is None:
        return True
    return any(d["line_number"] in lines for d in graph.get_import_details(importer=importer, imported=imported))


class EagerForbiddenContract(ForbiddenContract):
    """``forbidden``, over the graph of eager imports only (the graph is import-linter's copy)."""

    type_name = "eager_forbidden"

    def check(self, graph, verbose: bool):
        for importer in list(graph.modules):
            if graph.is_module_squashed(importer):
                continue  # an external package: its own imports are not ours to judge
            for imported in list(graph.find_modules_directly_imported_by(importer)):
                if not is_eager(graph, importer, imported):
                    graph.remove_import(importer=importer, imported=imported)
        return super().check(graph, verbose)
