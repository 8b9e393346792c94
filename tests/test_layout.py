"""The package's layout: subpackages that import downwards only, short modules,
and the 0.1.0 module names still answering (for old pickles)."""

import ast
import importlib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import sklearn_clip
from sklearn_clip._compat import MOVED_MODULES

PACKAGE = Path(sklearn_clip.__file__).parent
MAX_LINES = 400
# Imported by everything, importing nothing of the package but each other.
FOUNDATION = {
    "exceptions",
    "_options",
    "_config",
    "_files",
    "_folders",
    "_persistence",
    "_compat",
    "_torch",
}
# Each lower part, and the parts it may import.
BELOW = {
    "_models": FOUNDATION,
    "_encoding": FOUNDATION | {"_models"},
}


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _unit(module_name):
    """``sklearn_clip._encoding.cache`` -> ``_encoding``; a top module itself."""
    parts = module_name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _name(path):
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path):
    """Every ``sklearn_clip`` module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sklearn_clip")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "sklearn_clip":
                found |= {f"sklearn_clip.{a.name}" for a in node.names}
            elif node.module.startswith("sklearn_clip."):
                found.add(node.module)
    return found


def _unit_graph():
    graph = {}
    for path in _modules():
        importer = _unit(_name(path))
        for imported in _imports(path):
            if _unit(imported) not in (importer, "__init__"):
                graph.setdefault(importer, set()).add(_unit(imported))
    return graph


def test_no_module_is_longer_than_the_guide():
    long = {
        _name(p): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_parts_import_each_other_without_a_cycle():
    try:
        order = list(TopologicalSorter(_unit_graph()).static_order())
    except CycleError as error:
        pytest.fail(f"an import cycle between parts of the package: {error.args[1]}")
    assert order.index("_models") < order.index("_encoding") < order.index("_base")


@pytest.mark.parametrize("unit", sorted(FOUNDATION | set(BELOW)))
def test_lower_parts_import_only_what_lies_below_them(unit):
    allowed = BELOW.get(unit, FOUNDATION)
    assert _unit_graph().get(unit, set()) <= allowed


def test_nothing_imports_the_package_root_from_inside():
    # The root imports the estimators; a module importing the root back would
    # make the order of imports matter.
    offenders = [
        _name(p)
        for p in _modules()
        if p.name != "__init__.py" or p.parent != PACKAGE
        if any(
            name == "sklearn_clip" or _unit(name) == "__init__" for name in _imports(p)
        )
        and not _name(p).startswith(("sklearn_clip.cli", "sklearn_clip._cli"))
    ]
    assert offenders == []


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_a_0_1_0_module_name_is_the_module_of_today(old):
    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])
    assert module.__spec__.name == MOVED_MODULES[old]


def _fresh_import(code):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_importing_the_package_defers_torch_and_transformers():
    loaded = _fresh_import(
        "import sys, sklearn_clip; "
        "print(*(m in sys.modules for m in ('torch', 'transformers', 'sklearn')))"
    )
    assert loaded == ["False", "False", "False"]


@pytest.mark.parametrize(
    "argv", [["--help"], ["embed", "--help"], ["embed"], ["no-such-command"]]
)
def test_the_command_answers_about_its_arguments_without_torch(argv):
    code = (
        "import sys\nfrom sklearn_clip.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert _fresh_import(code)[-2:] == ["False", "False"]


def test_every_public_name_is_importable_and_listed():
    assert set(sklearn_clip.__all__) <= set(dir(sklearn_clip))
    for name in sklearn_clip.__all__:
        assert getattr(sklearn_clip, name).__name__ == name
