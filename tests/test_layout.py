"""The package's layout: subpackages that import downwards only, no import
cycle between files, PyTorch imported only where it is needed, short modules
and functions, and the old module names still answering (for old pickles)."""

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
# Each lower part, and the parts it may import: facts about models, the
# backend-free encoding pipeline, the backends, then the one entry point.
BELOW = {
    "_models": FOUNDATION,
    "_encoding": FOUNDATION | {"_models"},
    "_backends": FOUNDATION | {"_models", "_encoding"},
    "_loader": FOUNDATION | {"_models", "_encoding", "_backends"},
}
# The only modules that may import PyTorch when they are imported.
TORCH_AT_IMPORT = (
    "sklearn_clip._backends.torch",
    "sklearn_clip._train",
    "sklearn_clip.toy",
)
MAX_FUNCTION_LINES = 60


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


def _module_names():
    return {_name(path) for path in _modules()}


def _imported(node, modules):
    """The ``sklearn_clip`` modules one import statement imports."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.startswith("sklearn_clip")}
    if not (isinstance(node, ast.ImportFrom) and node.module):
        return set()
    if node.module == "sklearn_clip":
        return {f"sklearn_clip.{a.name}" for a in node.names}
    if not node.module.startswith("sklearn_clip."):
        return set()
    # ``from package import module`` imports that module.
    named = {f"{node.module}.{a.name}" for a in node.names}
    return (named & modules) or {node.module}


def _imports(path, modules=None):
    """Every ``sklearn_clip`` module ``path`` imports, at any depth of its code
    (imports inside functions count: they run too)."""
    modules = _module_names() if modules is None else modules
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        found |= _imported(node, modules)
    return found


def _import_time_nodes(tree):
    """The statements that run when a module is imported: everything but the
    bodies of functions."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        pending.extend(ast.iter_child_nodes(node))


def _unit_graph():
    graph = {}
    for path in _modules():
        importer = _unit(_name(path))
        for imported in _imports(path):
            if _unit(imported) not in (importer, "__init__"):
                graph.setdefault(importer, set()).add(_unit(imported))
    return graph


def _file_graph():
    modules = _module_names()
    return {
        _name(path): _imports(path, modules) - {"sklearn_clip", _name(path)}
        for path in _modules()
        if _name(path) != "sklearn_clip"
    }


def test_no_import_cycle_between_files():
    try:
        list(TopologicalSorter(_file_graph()).static_order())
    except CycleError as error:
        pytest.fail(f"an import cycle between modules: {error.args[1]}")


def test_the_backends_import_neither_each_other_nor_the_loader():
    for module, imported in _file_graph().items():
        for backend in ("torch", "exported"):
            if module.startswith(f"sklearn_clip._backends.{backend}"):
                others = {"torch", "exported"} - {backend}
                assert not any(
                    name.startswith(("sklearn_clip._loader",))
                    or any(
                        name.startswith(f"sklearn_clip._backends.{other}")
                        for other in others
                    )
                    for name in imported
                ), (module, imported)


def test_torch_is_imported_on_import_only_by_the_torch_backend_training_and_toy():
    found = []
    for path in _modules():
        for node in _import_time_nodes(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.partition(".")[0] == "torch" for n in names):
                found.append(_name(path))
    assert sorted({m for m in found if not m.startswith(TORCH_AT_IMPORT)}) == []


def test_torch_is_named_only_by_the_torch_backend_training_toy_and_its_helper():
    # Elsewhere PyTorch is reached through the backend's modules, or through
    # sklearn_clip._torch where it is used when installed (a faster resize).
    allowed = (*TORCH_AT_IMPORT, "sklearn_clip._torch")
    found = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.partition(".")[0] == "torch" for n in names):
                found.add(_name(path))
    assert sorted(m for m in found if not m.startswith(allowed)) == []


def _code_lines(function, lines):
    """Lines of a function's code: no docstring, blank lines or comments."""
    body = function.body
    if ast.get_docstring(function) is not None and len(body) > 1:
        body = body[1:]
    text = lines[body[0].lineno - 1 : function.end_lineno]
    return sum(1 for line in text if line.strip() and not line.strip().startswith("#"))


def test_no_function_is_longer_than_the_guide():
    long = {}
    for path in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := _code_lines(node, lines)) > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}.{node.name}"] = n
    assert long == {}


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
    parts = ("_models", "_encoding", "_backends", "_loader", "_base")
    assert [order.index(part) for part in parts] == sorted(
        order.index(part) for part in parts
    )


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


INFERENCE = (
    "CLIPEmbeddingTransformer",
    "CLIPZeroShotClassifier",
    "CLIPFewShotClassifier",
    "CLIPNearestNeighbors",
    "ExportedModelHandle",
    "load_model",
    "export_model",
)


def test_every_inference_estimator_imports_without_torch(without_torch):
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"from sklearn_clip import {', '.join(INFERENCE)}\n"
        "import sklearn_clip.metrics, sklearn_clip.datasets\n"
        "print(any(m.partition('.')[0] == 'torch' for m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=without_torch,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]


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


def test_the_architecture_page_lists_every_module_once():
    import re

    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^\| `([\w/]+\.py)` \|", page, flags=re.MULTILINE)
    modules = [
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if path.name != "__init__.py" or path.parent == PACKAGE
    ]
    assert sorted(listed) == sorted(modules)
