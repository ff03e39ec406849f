"""The package's names and imports, read from its source with `ast` (nothing is imported):

- every public top-level name (a function, a class, or a CamelCase type alias) is defined once in ace_rl, so that
  a name says one thing wherever it is read;
- the module import graph has no cycle between ace_rl.export and ace_rl.policy.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ace_rl"

SUITE_INTERFACE = frozenset({"make", "known_names", "register"})
"""The functions every task-suite plugin (ace_rl/suites/*.py) defines under the same names: one interface."""


def is_type_alias_name(name: str) -> bool:
    """CamelCase, as a type alias is named (``LinearLike = nn.Linear | StackedLinear``); not a CONSTANT."""
    return name[0].isupper() and not name.isupper()


def defined_names(tree: ast.Module) -> list[str]:
    """The public functions, classes and type aliases a module defines at its top level (imports are not
    definitions)."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    code = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    return [name for name in names if not name.startswith("_") and (name in code or is_type_alias_name(name))]


def definitions() -> dict[str, list[Path]]:
    """Every public top-level function, class and type alias of ace_rl, with the files that define it."""
    where: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in dict.fromkeys(defined_names(ast.parse(path.read_text(), str(path)))):
            where[name].append(path)
    return where


def is_allowed_duplicate(name: str, paths: list[Path]) -> bool:
    return name in SUITE_INTERFACE and all(path.parent.name == "suites" for path in paths)


def test_every_public_top_level_name_is_defined_once() -> None:
    duplicates = {
        name: [str(path.relative_to(PACKAGE.parent)) for path in paths]
        for name, paths in definitions().items()
        if len(paths) > 1 and not is_allowed_duplicate(name, paths)
    }
    assert duplicates == {}, f"names defined in more than one module: {duplicates}"


def test_the_duplicate_check_finds_a_duplicate() -> None:
    """The check above could not pass by reading nothing: it sees the suite interface's shared names."""
    found = definitions()
    assert len(found["make"]) > 1 and all(path.parent.name == "suites" for path in found["make"])
    assert "Policy" in found and len(found["Policy"]) == 1


# --------------------------------------------------------------------------------------------------
# The module import graph
# --------------------------------------------------------------------------------------------------
def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking_block(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(statements: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported: at its top level, also inside an ``if``, ``try`` or ``with``
    there, but not inside a function or class (a lazy import) nor under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in statements:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not is_type_checking_block(node):
            found += module_level_imports(node.body) + module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(handler.body for handler in node.handlers)):
                found += module_level_imports(block)
        elif isinstance(node, ast.With):
            found += module_level_imports(node.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each ace_rl module and the ace_rl modules its module-level imports name (``from ace_rl.x import y``: x, or
    x.y where y is a module)."""
    paths = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for node in module_level_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif node.level == 0 and node.module is not None:
                targets = [node.module]
                targets += [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                raise AssertionError(f"{path}: a relative import; ace_rl imports by absolute name")
            graph[name] |= {target for target in targets if target in paths and target != name}
    return graph


def import_path(graph: dict[str, set[str]], start: str, end: str) -> list[str] | None:
    """The shortest chain of imports from ``start`` to ``end``, both included; None where there is none."""
    previous: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for module in frontier:
            for imported in sorted(graph[module]):
                if imported in previous:
                    continue
                previous[imported] = module
                if imported == end:
                    chain = [end]
                    while (step := previous[chain[-1]]) is not None:
                        chain.append(step)
                    return chain[::-1]
                following.append(imported)
        frontier = following
    return None


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module that is on a cycle, each cycle once."""
    cycles: dict[frozenset[str], list[str]] = {}
    for module in sorted(graph):
        for imported in sorted(graph[module]):
            back = import_path(graph, imported, module)
            if back is not None:
                cycle = [module, *back]
                cycles.setdefault(frozenset(cycle), cycle)
                break
    return list(cycles.values())


def test_export_and_policy_import_each_other_in_one_direction_only() -> None:
    graph = import_graph()
    there = import_path(graph, "ace_rl.policy", "ace_rl.export")
    back = import_path(graph, "ace_rl.export", "ace_rl.policy")
    assert there is None or back is None, "an import cycle: " + " -> ".join([*(there or []), *(back or [])[1:]])
    # Not hidden either: policy imports export as it loads, and export names policy nowhere, not even for types
    # (it reads a policy through its ExportablePolicy protocol).
    assert there is not None
    export = PACKAGE / "export.py"
    export_imports = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(export.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert "ace_rl.policy" not in export_imports


def every_import(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import a module may run, lazy ones inside functions included, but none under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking_block(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_the_agents_and_their_configuration_import_each_other_in_one_direction_only() -> None:
    """The circle agents -> (lazily) ace/td3 -> config -> agents is gone, lazy imports counted: the configuration
    imports the registry, the registry the hyperparameters, the agents their hyperparameters; nothing under them
    imports the configuration back."""
    paths = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for node in every_import(ast.parse(path.read_text(), str(path))):
            targets = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            graph[name] |= {target for target in targets if target in paths and target != name}
    involved = {"ace_rl.config", "ace_rl.agents", "ace_rl.hyperparameters", "ace_rl.ace", "ace_rl.td3"}
    cycles = [cycle for cycle in import_cycles(graph) if involved & set(cycle)]
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
    assert "ace_rl.ace" in graph["ace_rl.agents"]  # the lazy import that made the circle is still seen


def test_the_import_graph_sees_imports_and_cycles() -> None:
    """The cycle check above could not pass by reading nothing."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    real = import_graph()
    assert "ace_rl.trust" in real["ace_rl.checkpoint"]
    assert "ace_rl.agents" not in real["ace_rl.checkpoint"]  # imported inside read_policy_file only
    assert "ace_rl.api" not in real["ace_rl"]  # under `if TYPE_CHECKING:` only


if __name__ == "__main__":  # every cycle of the package's imports, for a person to read
    for found in import_cycles(import_graph()):
        print(" -> ".join(found))
