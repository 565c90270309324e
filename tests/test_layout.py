"""The package's shape: dependencies point one way, and the public surface is deliberate."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import wavespeed_outpaint

PACKAGE = Path(wavespeed_outpaint.__file__).parent
# The façade and what is built on it; everything else sits below `client`.
ABOVE_CLIENT = {
    "__init__", "client", "cli", "_runner", "_ray_run", "_continuous", "demo", "ray", "webhooks",
    "__main__",
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts)


def _type_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _nodes(tree: ast.AST, *, typing_too: bool) -> list[ast.AST]:
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if not typing_too and _type_only(node):
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _imports(path: Path, *, typing_too: bool) -> set[str]:
    """Package modules `path` imports, relative imports resolved; with `typing_too`,
    those under `if TYPE_CHECKING:` as well."""
    package = _module_name(path).split(".")[:-1]
    found: set[str] = set()
    for node in _nodes(ast.parse(path.read_text()), typing_too=typing_too):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = [*base, *(node.module.split(".") if node.module else [])]
            if node.module is None:
                found.update(".".join([*target, alias.name]) for alias in node.names)
            else:
                found.add(".".join(target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "wavespeed_outpaint"
        ):
            found.add(node.module.removeprefix("wavespeed_outpaint").lstrip("."))  # type: ignore[union-attr]
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules or f"{m}.__init__" in modules}


def _graph(*, typing_too: bool = False) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p, typing_too=typing_too) for p in PACKAGE.rglob("*.py")}


def test_nothing_below_the_client_imports_it() -> None:
    importers = {m for m, deps in _graph(typing_too=True).items() if "client" in deps}
    assert importers <= ABOVE_CLIENT, importers - ABOVE_CLIENT


def test_the_imports_have_no_cycle() -> None:
    # Type-only imports (errors name the request type in their signatures) are left out.
    graph = _graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for dep in sorted(graph.get(module, set()) | graph.get(f"{module}.__init__", set())):
            visit(dep, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_public_surface_is_exactly_all_and_each_name_is_documented() -> None:
    public = {
        name
        for name, value in vars(wavespeed_outpaint).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name not in {"annotations", "logging"}
    }
    assert set(wavespeed_outpaint.__all__) - {"__version__"} == public
    readme = (PACKAGE.parent / "README.md").read_text()
    for name in wavespeed_outpaint.__all__:
        value = getattr(wavespeed_outpaint, name)
        assert re.search(rf"\b{re.escape(name)}\b", readme), f"{name} is not in the README"
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
