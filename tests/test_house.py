"""The house plan (shared/DESIGN.md) as checks: lower floors never import higher ones, no import
cycle, one home per camera formula, short files, a test folder per package."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sv4d"
TESTS = Path(__file__).resolve().parent

#: floors, lowest first; a package may import its own floor's package and anything below
FLOORS = [
    {"errors", "config", "devices"},
    {"cameras"},
    {"io"},
    {"models"},
    {"diffusion", "metrics"},
    {"checkpoint"},
    {"generate", "fit", "data", "train", "evaluate", "verify"},
    {"workflow"},
    {"demo"},
    {"cli", "__init__", "__main__"},
]
FLOOR = {pkg: i for i, floor in enumerate(FLOORS) for pkg in floor}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(every sv4d module imported anywhere in the file, those imported when the module loads),
    skipping ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    anywhere, at_load = set(), set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            if n == "sv4d" or n.startswith("sv4d."):
                anywhere.add(n)
                if top:
                    at_load.add(n)
        for child in ast.iter_child_nodes(node):
            visit(child, top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, True)
    return anywhere, at_load


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_lower_floors_never_import_higher_ones():
    bad = []
    for name, path in _modules().items():
        mine = _top(name) if path.name != "__main__.py" or name.count(".") > 1 else "__main__"
        for imp in _imports(path)[0]:
            theirs = _top(imp)
            if theirs not in FLOOR:
                continue  # a name imported from the package root
            # above is forbidden; beside too (two pipelines, diffusion and metrics), but on the ground and top floors
            if FLOOR[theirs] > FLOOR[mine] or (
                FLOOR[theirs] == FLOOR[mine] and theirs != mine and 0 < FLOOR[mine] < len(FLOORS) - 1
            ):
                bad.append(f"{name} imports {imp}")
    assert bad == []


def test_no_import_cycle_when_modules_load():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imp in _imports(path)[1]:
            # "from sv4d.pkg import name" names a module when pkg.name is one, else pkg itself
            deps.add(imp if imp in modules else imp.rsplit(".", 1)[0])
        graph[name] = {d for d in deps if d in modules and d != name}
    state: dict[str, int] = {}
    cycles = []

    def walk(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d] if d in stack else [n, d])
            elif d not in state:
                walk(d, stack + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            walk(n, [n])
    # a package __init__ importing its own modules is the one allowed loop
    real = [c for c in cycles if not all(m.startswith(c[0]) or c[0].startswith(m) for m in c)]
    assert real == []


def test_long_files_say_why_at_their_top():
    long = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        n = text.count("\n")
        head = text[:3000]
        if n > 520 and "Why this file is long" not in head:
            long.append(f"{path.relative_to(SRC)} ({n} lines)")
    assert long == []


def test_tests_mirror_the_packages():
    packages = sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    missing = [p for p in packages if not (TESTS / p).is_dir() or not list((TESTS / p).glob("test_*.py"))]
    assert missing == []
