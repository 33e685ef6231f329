"""The layout's invariants: `utils` (what lessons import) has no import cycle and never imports
the course's tooling (`course_tools`); lessons import only `utils` from this repository."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"utils", "course_tools", "tests", "benchmarks", "lessons", "notebooks"}


def _imports(path: Path, package: str, top_level_only: bool) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved in `package`).

    `top_level_only`: only imports that run when the module is imported (not those inside a
    function, nor under `if TYPE_CHECKING:`), which are the ones an import cycle breaks on."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes: list[ast.AST] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if top_level_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        nodes.append(node)
        todo += list(ast.iter_child_nodes(node))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from . import x`
    return found


def _dynamic_imports(path: Path) -> set[str]:
    """Modules named by `importlib.import_module("...")` or `__import__("...")` calls."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func.endswith("import_module") or func == "__import__":
                found.add(str(node.args[0].value))
    return found


def _graph(root: Path, package: str) -> dict[str, set[str]]:
    """{module: modules of the same package it imports when imported}."""
    folder = root / package
    modules = {p.stem if p.stem != "__init__" else "": p for p in folder.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        full = f"{package}.{name}" if name else package
        imported = _imports(path, package, top_level_only=True)
        graph[full] = {m for m in imported
                       if m.startswith(package + ".") and m.split(".")[1] in modules and m != full}
        graph[full] = {".".join(m.split(".")[:2]) for m in graph[full]}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_utils_has_no_import_cycle():
    graph = _graph(ROOT, "utils")
    assert len(graph) > 5, "utils/ was not found"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in utils: " + " -> ".join(cycle or [])


def test_the_import_scanner_sees_every_kind_of_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import a.b\nfrom c import d\nfrom .e import f\n\ndef g():\n"
                    "    import importlib\n    importlib.import_module('course_tools.x')\n", encoding="utf-8")
    assert _imports(path, "pkg", top_level_only=False) == {"a.b", "c", "c.d", "pkg.e", "pkg.e.f", "importlib"}
    assert _imports(path, "pkg", top_level_only=True) == {"a.b", "c", "c.d", "pkg.e", "pkg.e.f"}
    assert _dynamic_imports(path) == {"course_tools.x"}


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "a.py").write_text("from .b import x\n", encoding="utf-8")
    (tmp_path / "pkg" / "b.py").write_text("import pkg.c\n\ndef f():\n    from . import a\n",
                                           encoding="utf-8")
    (tmp_path / "pkg" / "c.py").write_text("from pkg import a\n", encoding="utf-8")
    assert find_cycle(_graph(tmp_path, "pkg")) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (tmp_path / "pkg" / "c.py").write_text("def g():\n    from pkg import a\n", encoding="utf-8")
    assert find_cycle(_graph(tmp_path, "pkg")) is None  # an import inside a function waits


def test_utils_never_imports_the_tooling():
    bad = {}
    for path in sorted((ROOT / "utils").rglob("*.py")):
        names = _imports(path, "utils", top_level_only=False) | _dynamic_imports(path)
        tooling = sorted(n for n in names if n.split(".")[0] == "course_tools")
        if tooling:
            bad[path.relative_to(ROOT).as_posix()] = tooling
    assert not bad, f"utils must not import course_tools (lessons import utils): {bad}"


@pytest.mark.parametrize("src", sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]-*.py")),
                         ids=lambda p: p.stem)
def test_lessons_import_only_utils_from_this_repository(src):
    names = _imports(src, "", top_level_only=False)
    ours = sorted({n.split(".")[0] for n in names} & FIRST_PARTY - {"utils"})
    assert not ours, f"{src.name} imports {ours}: lessons import only `utils` (and installed packages)"
    assert "utils" in {n.split(".")[0] for n in names}


def test_the_tooling_imports_no_lesson_and_exists():
    assert (ROOT / "course_tools" / "__main__.py").exists()
    for path in sorted((ROOT / "course_tools").glob("*.py")):
        names = _imports(path, "course_tools", top_level_only=False)
        assert not {n.split(".")[0] for n in names} & {"tests", "notebooks", "benchmarks"}, path.name
    assert "course_tools" not in sys.stdlib_module_names


MODULE_LIMIT = 450  # lines: a module a student reads in one sitting (the aim is ~400)
PARAMETER_LIMIT = 8  # a function with more takes a small @dataclass config instead
# All of utils, in lines: a ratchet, so that the library does not grow back (8,283 when #15 was
# filed, 10,290 at its largest, 7,435 after #15's work). #15 asks for 5,500, which needs features
# that #3, #6, #8, #10, #16 and #17 require to be dropped: lower this when that is decided.
UTILS_LIMIT = 7_500


def test_no_utils_module_is_too_long_to_read_in_one_sitting():
    long = {p.name: n for p in sorted((ROOT / "utils").glob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LIMIT}
    assert not long, f"split these utils modules by concept (over {MODULE_LIMIT} lines): {long}"


def test_utils_as_a_whole_does_not_grow_back():
    total = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "utils").rglob("*.py"))
    assert total <= UTILS_LIMIT, (f"utils has {total:,} lines, over its budget of {UTILS_LIMIT:,}: "
                                  "condense or move tooling to course_tools/ before adding")


def _parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Named parameters a caller may pass (self/cls, *args and **kwargs not counted)."""
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")])


def test_no_utils_function_takes_too_many_parameters(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f(self, a, b=1, *args, c, **kw):\n    pass\n", encoding="utf-8")
    assert _parameter_count(ast.parse(sample.read_text()).body[0]) == 3
    crowded = {}
    for path in sorted((ROOT / "utils").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := _parameter_count(node)) > PARAMETER_LIMIT:
                    crowded[f"{path.name}:{node.name}"] = n
    assert not crowded, f"group these parameters in a config dataclass: {crowded}"
