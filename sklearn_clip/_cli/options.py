"""Options whose default and help come from an estimator's own parameter.

An option such as ``finetune --epochs`` stands for one parameter of what the
subcommand runs (``CLIPContrastiveFinetuner(max_epochs=...)``).
:func:`estimator_option` adds it with that parameter's default and the first
sentence of its description, so the command cannot drift from the estimator;
``tests/cli/test_cli_defaults.py`` walks every subcommand and checks.

The estimator's module is read, not imported: ``sklearn-clip --help`` must
answer without importing PyTorch, which the fine-tuner's module imports at
its top. The source is parsed with :mod:`ast`: defaults are literals, or names
bound to literals in that module or in the module they are imported from; the
description is taken from the numpydoc "Parameters" section of the docstring,
with the shared descriptions that :func:`sklearn_clip._base.fill_doc` puts in.
"""

import ast
import functools
import importlib.util
import inspect
import re
from pathlib import Path

# What the subcommands run, as "module:qualified name": one place to update
# when a module moves (the test of the defaults fails until then).
EMBEDDER = "sklearn_clip._embedding:CLIPEmbeddingTransformer"
ZERO_SHOT = "sklearn_clip._classify.zero_shot:CLIPZeroShotClassifier"
NEIGHBORS = "sklearn_clip._retrieval.neighbors:CLIPNearestNeighbors"
FINETUNER = "sklearn_clip._train.finetuner:CLIPContrastiveFinetuner"
EXPORT = "sklearn_clip._loader.export:export_model"
DEMO = "sklearn_clip.demo:run_demo"

# Where `fill_doc` takes the `{model}`-style shared descriptions from.
_SHARED_DOCS = ("sklearn_clip._base", "SHARED_PARAMETER_DOCS")


def estimator_option(parser, estimator, parameter, *flags, note=None, **kwargs):
    """Add the option ``flags`` for ``parameter`` of ``estimator``.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where the option goes.
    estimator : str
        ``"module:Class"`` (a parameter of its ``__init__``),
        ``"module:Class.method"`` or ``"module:function"``.
    parameter : str
        The parameter's name.
    *flags : str
        The option strings, such as ``"--epochs"``.
    note : str, default=None
        Appended to the estimator's sentence: what the command adds to it.
    **kwargs
        Passed to ``add_argument`` (``type``, ``choices``, ``action``...).
        ``help`` replaces the estimator's sentence, where that speaks of
        Python values the command does not take (a model handle, say). A
        ``default`` departs from the estimator: its help must say why, and
        the test of the defaults must list it.

    Returns
    -------
    argparse.Action
        The option, with ``estimator_parameter = (estimator, parameter)``.
    """
    default, description = describe(estimator, parameter)
    kwargs.setdefault("default", default)
    text = kwargs.pop("help", None) or description.replace("%", "%%")
    if note:
        text = f"{text} {note}"
    action = parser.add_argument(
        *flags, help=f"{text} (default: %(default)s)", **kwargs
    )
    action.estimator_parameter = (estimator, parameter)
    return action


def describe(estimator, parameter):
    """``(default, first sentence of the description)`` of a parameter."""
    try:
        return _parameters(estimator)[parameter]
    except KeyError:
        raise LookupError(f"{estimator} has no documented {parameter!r}") from None


@functools.cache
def _parameters(estimator):
    """``{name: (default, sentence)}`` of each parameter with a default."""
    module, _, qualname = estimator.partition(":")
    function, documented = _definition(_parse(module), qualname)
    doc = ast.get_docstring(documented, clean=False)
    for name, text in _constant(*_SHARED_DOCS).items():  # as fill_doc does
        doc = doc.replace(f"    {{{name}}}\n", f"    {text}\n")
    sentences = _descriptions(doc)
    args = function.args
    positional = args.posonlyargs + args.args
    pairs = [
        *zip(positional[len(positional) - len(args.defaults) :], args.defaults),
        *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None),
    ]
    return {
        arg.arg: (_value(module, node), sentences.get(arg.arg, ""))
        for arg, node in pairs
    }


def _definition(tree, qualname):
    """``(function with the defaults, node with the docstring)``."""
    node, body = None, tree.body
    for part in qualname.split("."):
        node = next(
            n
            for n in body
            if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == part
        )
        body = node.body
    if isinstance(node, ast.ClassDef):  # numpydoc documents __init__ on the class
        init = next(n for n in body if getattr(n, "name", None) == "__init__")
        return init, node
    return node, node


def _value(module, node):
    """The literal ``node`` is, following a name to where it is bound."""
    if isinstance(node, ast.Name):
        return _constant(module, node.id)
    return ast.literal_eval(node)


def _constant(module, name):
    """The literal bound to ``name`` at the top of ``module`` (or imported)."""
    for statement in _parse(module).body:
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        else:
            targets = getattr(statement, "targets", [])
        if any(getattr(t, "id", None) == name for t in targets) and statement.value:
            return _value(module, statement.value)
        if isinstance(statement, ast.ImportFrom):
            for alias in statement.names:
                if (alias.asname or alias.name) == name:
                    return _constant(_imported(module, statement), alias.name)
    raise LookupError(f"{module} binds no literal {name!r}")


def _imported(module, statement):
    """The absolute name of the module a ``from ... import`` reads."""
    if not statement.level:
        return statement.module
    package = module.rsplit(".", statement.level)[0]
    return f"{package}.{statement.module}" if statement.module else package


@functools.cache
def _parse(module):
    """The syntax tree of ``module``, found without importing it or its parents
    (a parent package's ``__init__`` may import PyTorch)."""
    top, _, rest = module.partition(".")
    path = Path(importlib.util.find_spec(top).submodule_search_locations[0])
    path = path.joinpath(*rest.split(".")) if rest else path
    source = path.with_suffix(".py")
    if not source.is_file():
        source = path / "__init__.py"
    return ast.parse(source.read_text(encoding="utf-8"), str(source))


def _descriptions(doc):
    """``{name: first sentence}`` from a numpydoc "Parameters" section."""
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index("Parameters") + 2
    found, paragraph = {}, None
    for line, following in zip(lines[start:], [*lines[start + 1 :], ""]):
        if following.strip() and not following.strip("-"):
            break  # `line` heads the next section
        if line[:1].strip():  # "name : type" or "n_train, n_test : int"
            paragraph = []
            for name in line.partition(" : ")[0].split(","):
                found[name.strip()] = paragraph
        elif not line.strip():
            paragraph = None  # the first paragraph only
        elif paragraph is not None:
            paragraph.append(line.strip())
    return {name: _first_sentence(" ".join(words)) for name, words in found.items()}


# A sentence ends at a full stop before a capital, a digit, a quote or markup
# (``"float16" halves``, ````dtype_`` records``), but not after "e.g." or "i.e.".
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<=\.)\s+(?=[A-Z0-9\"`:])")


def _first_sentence(text):
    """The first sentence, with reStructuredText roles and literals made plain."""
    text = _SENTENCE_END.split(text, maxsplit=1)[0]
    text = re.sub(r":[\w:]+:`~[\w.]*?(\w+)`", r"\1", text)  # :class:`~a.B` -> B
    return re.sub(r":[\w:]+:`([^`]*)`", r"\1", text).replace("``", "")
