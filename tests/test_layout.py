"""The layout rules of issue 11, read from the source with ``ast`` (nothing is imported).

- no import cycle between project modules: an edge for every ``import a.b`` (to ``a.b``) and every
  ``from a.b import c`` (to ``a.b`` — the package face when ``a.b`` is a package — and to ``a.b.c``
  when that is a module), wherever the statement sits (top level, function, ``TYPE_CHECKING``);
- no module over 700 lines (one allow-listed exception, owned elsewhere);
- package faces (``__init__``) only re-export: a docstring, imports, ``__all__`` (and
  ``__version__``), nothing else;
- at most six loose modules directly in ``ledger/``;
- migrations are frozen snapshots: they import no project code.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "web", "workers")
MAX_LINES = 700
#: modules allowed over MAX_LINES, each with the issue that splits it
OVERSIZE_ALLOWED = {
    "ledger/services/shards.py",  # issue 17: the workers engineer splits the shard audit
}
MAX_LOOSE = 6
#: faces allowed one statement that is not a re-export, with the reason
FACE_EXCEPTIONS = {
    "workers/__init__.py",  # ``celery -A workers`` finds the Celery ``app`` on the package itself
}


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (see the module docstring for what counts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if _is_package(path) else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = _module_files()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's SCCs with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    for start in sorted(graph):
        if start in index:
            continue
        # iterative DFS: (node, iterator over its successors)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def test_strongly_connected_finds_a_cycle_through_a_face():
    graph = {
        "p": {"p.a"},  # the face re-exports a
        "p.a": {"p.b"},
        "p.b": {"p"},  # b imports the face back
        "q": set(),
    }
    assert strongly_connected(graph) == [["p", "p.a", "p.b"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = strongly_connected(import_graph())
    assert cycles == [], f"import cycles between project modules: {cycles}"


def test_no_module_over_700_lines():
    over = {}
    for path in sorted(ROOT.joinpath(p) for p in PACKAGES):
        for file in path.rglob("*.py"):
            rel = file.relative_to(ROOT).as_posix()
            lines = len(file.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES and rel not in OVERSIZE_ALLOWED:
                over[rel] = lines
    assert over == {}, f"modules over {MAX_LINES} lines: {over}"


def test_at_most_six_loose_modules_in_ledger():
    loose = sorted(p.name for p in (ROOT / "ledger").glob("*.py"))
    assert len(loose) <= MAX_LOOSE, f"{len(loose)} loose modules in ledger/: {loose}"


def test_migrations_import_no_project_code():
    offenders = []
    for file in sorted((ROOT / "alembic" / "versions").glob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if not node.level else ["<relative>"]
            else:
                continue
            for module in names:
                if module == "<relative>" or module.split(".")[0] in PACKAGES:
                    offenders.append(f"{file.name}:{node.lineno} imports {module}")
    assert offenders == [], f"migrations import project code: {offenders}"


def test_package_faces_only_re_export():
    offenders = []
    for package in PACKAGES:
        for face in sorted((ROOT / package).rglob("__init__.py")):
            rel = face.relative_to(ROOT).as_posix()
            if rel in FACE_EXCEPTIONS:
                continue
            tree = ast.parse(face.read_text(encoding="utf-8"), filename=str(face))
            for i, node in enumerate(tree.body):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                    continue  # the docstring
                if isinstance(node, ast.Assign) and all(
                    isinstance(t, ast.Name) and t.id in ("__all__", "__version__") for t in node.targets
                ):
                    continue
                offenders.append(f"{rel}:{node.lineno} {type(node).__name__}")
    assert offenders == [], f"package faces that do more than re-export: {offenders}"
