"""The package's shape: dependencies point one way, and the public surface is deliberate."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import wavespeed_outpaint

PACKAGE = Path(wavespeed_outpaint.__file__).parent

# The package in layers: each folder (or public module) belongs to one, and a layer
# imports only the layers it names here (type-only imports too). The public modules sit
# in the layer of what they front: `ray` over `_cluster/`, `review` over `_review/`.
LAYERS: dict[str, tuple[str, ...]] = {
    "telemetry": ("_telemetry",),
    "audio": ("_audio",),
    "words": ("_root_errors", "errors", "models", "options", "seams", "_version"),
    "api": ("_api",),
    "outputs": ("_outputs",),
    "engine": ("_engine",),
    "client": ("__init__", "client", "webhooks"),
    "cluster": ("_cluster", "ray"),
    "review": ("_review", "review"),
    "emulator": ("emulator", "testing", "pytest_plugin"),
    "cli": ("_cli", "__main__"),
}
BELOW_CLIENT = {"engine", "outputs", "api", "words", "audio", "telemetry"}
MAY_IMPORT: dict[str, set[str]] = {
    "telemetry": set(),
    "audio": set(),
    "words": {"audio"},
    "api": {"words", "audio", "telemetry"},
    "outputs": {"api", "words", "audio", "telemetry"},
    "engine": {"outputs", "api", "words", "audio", "telemetry"},
    "client": BELOW_CLIENT,
    "cluster": {"client", *BELOW_CLIENT},
    "review": {"engine", "outputs", "words", "audio", "telemetry"},
    "emulator": {"api", "words", "audio", "telemetry"},
    "cli": set(LAYERS) - {"cli"},
}
# What `import wavespeed_outpaint` must leave unloaded: an SDK user gets none of it.
NOT_ON_IMPORT = ("_cli", "_cluster", "_review", "emulator", "ray", "review", "testing")


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


def _layer(module: str) -> str:
    top = module.split(".")[0]
    found = [layer for layer, tops in LAYERS.items() if top in tops]
    assert found, f"{module} is in no layer: add {top} to LAYERS"
    return found[0]


def test_each_layer_imports_only_the_layers_under_it() -> None:
    wrong = sorted(
        f"{module} ({_layer(module)}) imports {dep} ({_layer(dep)})"
        for module, deps in _graph(typing_too=True).items()
        for dep in deps
        if _layer(dep) != _layer(module) and _layer(dep) not in MAY_IMPORT[_layer(module)]
    )
    assert not wrong, "\n".join(wrong)


def test_each_folder_says_what_it_is() -> None:
    for folder in PACKAGE.iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            init = folder / "__init__.py"
            assert init.exists(), f"{folder.name}/ has no __init__.py"
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc, f"{folder.name}/__init__.py has no docstring"
            assert "Import" in doc, f"{folder.name}/__init__.py: say what it imports"


def test_importing_the_sdk_loads_no_command_line_cluster_review_or_emulator() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, wavespeed_outpaint; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    ours = [m.split(".")[1] for m in loaded if m.startswith("wavespeed_outpaint.")]
    assert not set(ours) & set(NOT_ON_IMPORT), set(ours) & set(NOT_ON_IMPORT)
    assert "ray" not in loaded


def test_the_imports_have_no_cycle() -> None:
    graph = _graph(typing_too=True)
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
    root = PACKAGE.parent
    docs = "\n".join(p.read_text() for p in [root / "README.md", *sorted(root.glob("docs/*.md"))])
    for name in wavespeed_outpaint.__all__:
        value = getattr(wavespeed_outpaint, name)
        assert re.search(rf"\b{re.escape(name)}\b", docs), f"{name} is in no page of the docs"
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
