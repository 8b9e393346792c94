"""The command's options take their defaults and help from the estimators.

Each option that stands for an estimator's parameter is added by
:func:`sklearn_clip._cli.options.estimator_option`, which reads the default
and description from the estimator's source (without importing it, so that
``--help`` needs no PyTorch). These tests compare what it read with what
Python sees, for every option of every subcommand.
"""

import argparse
import importlib
import inspect
import re

import pytest
from numpydoc.docscrape import NumpyDocString

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPNearestNeighbors,
    CLIPZeroShotClassifier,
    export_model,
)
from sklearn_clip._cli import embed, finetune
from sklearn_clip._cli.options import describe
from sklearn_clip.cli import build_parser
from sklearn_clip.demo import run_demo
from sklearn_clip.evaluate import evaluate

# What each subcommand runs: its options named after a parameter of this
# must stand for that parameter.
DRIVES = {
    "demo": run_demo,
    "embed": CLIPEmbeddingTransformer,
    "zero-shot": CLIPZeroShotClassifier,
    "finetune": CLIPContrastiveFinetuner,
    "search": CLIPNearestNeighbors,
    "duplicates": CLIPNearestNeighbors,
    "export": export_model,
    "evaluate": evaluate,
}

# Defaults that depart from the estimator's on purpose, and why (each option's
# help says so too).
DEPARTURES = {
    (
        "finetune",
        "--random-state",
    ): "random_state=None draws a new seed each run, so the "
    "same command rerun with --resume would start another run instead",
    ("search", "--on-error"): "a folder searched by hand usually holds a stray "
    "file, which is listed and left out instead of stopping the search",
    ("duplicates", "--on-error"): "the same as search",
}


def _subcommands():
    parser = build_parser()
    action = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    return action.choices


def _mapped_options():
    return [
        pytest.param(command, action, id=f"{command} {action.option_strings[0]}")
        for command, parser in _subcommands().items()
        for action in parser._actions
        if hasattr(action, "estimator_parameter")
    ]


def _resolve(estimator):
    """The object a ``"module:qualified.name"`` names, imported."""
    module, _, qualname = estimator.partition(":")
    owner = found = importlib.import_module(module)
    for part in qualname.split("."):
        owner, found = found, getattr(found, part)
    return found, owner


def _default(estimator, parameter):
    found, _ = _resolve(estimator)
    return inspect.signature(found).parameters[parameter].default


def test_every_subcommand_says_what_it_runs():
    assert set(_subcommands()) == set(DRIVES)


@pytest.mark.parametrize("command, action", _mapped_options())
def test_every_default_equals_the_estimators(command, action):
    estimator, parameter = action.estimator_parameter
    found, owner = _resolve(estimator)
    # The option stands for what the command runs (or one of its methods).
    assert DRIVES[command] in (found, owner)
    expected = _default(estimator, parameter)
    departure = (command, action.option_strings[0])
    if departure in DEPARTURES:
        assert action.default != expected, f"{departure} no longer departs"
    else:
        assert action.default == expected
        assert type(action.default) is type(expected)


@pytest.mark.parametrize("command", sorted(DRIVES))
def test_every_option_named_after_a_parameter_stands_for_it(command):
    parameters = inspect.signature(DRIVES[command]).parameters
    # Required inputs (export's model and path) have no default to repeat.
    defaults = {n for n, p in parameters.items() if p.default is not p.empty}
    for action in _subcommands()[command]._actions:
        if action.option_strings and action.dest in defaults:
            assert hasattr(action, "estimator_parameter"), (
                f"{command} {action.option_strings[0]} repeats a default by hand; "
                "add it with sklearn_clip._cli.options.estimator_option"
            )


@pytest.mark.parametrize(
    "estimator",
    [
        CLIPEmbeddingTransformer,
        CLIPZeroShotClassifier,
        CLIPFewShotClassifier,
        CLIPNearestNeighbors,
        CLIPContrastiveFinetuner,
        export_model,
        run_demo,
    ],
)
def test_the_source_reader_agrees_with_python(estimator):
    spec = f"{estimator.__module__}:{estimator.__qualname__}"
    for name, parameter in inspect.signature(estimator).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            default, sentence = describe(spec, name)
            assert default == parameter.default, name
            assert sentence, f"{name} has no description"


def _plain(text):
    text = re.sub(r":[\w:]+:`~[\w.]*?(\w+)`", r"\1", text)
    text = re.sub(r":[\w:]+:`([^`]*)`", r"\1", text).replace("``", "")
    return " ".join(text.split())


@pytest.mark.parametrize(
    "command, flag",
    [
        ("finetune", "--epochs"),
        ("finetune", "--learning-rate"),
        ("embed", "--device"),  # a description shared through fill_doc
        ("duplicates", "--threshold"),  # a method's parameter
        ("export", "--backend"),  # a function's parameter
    ],
)
def test_help_shows_the_estimators_description(command, flag):
    parser = _subcommands()[command]
    action = next(a for a in parser._actions if flag in a.option_strings)
    estimator, parameter = action.estimator_parameter
    found, _ = _resolve(estimator)
    documented = {
        name.strip(): entry.desc
        for entry in NumpyDocString(inspect.getdoc(found))["Parameters"]
        for name in entry.name.split(",")
    }
    first = re.split(r"(?<=\.)\s", _plain(" ".join(documented[parameter])))[0]
    assert action.help.startswith(first)
    shown = " ".join(parser.format_help().split())
    assert first in shown and f"(default: {action.default})" in shown


def test_a_given_template_replaces_the_default_set():
    parser = build_parser()
    base = ["zero-shot", "--labels", "a,b", "--images", ".", "--output", "p.csv"]
    assert parser.parse_args(base).template == "simple"
    given = parser.parse_args([*base, "--template", "x {}", "--template", "y {}"])
    assert given.template == ["x {}", "y {}"]


@pytest.mark.parametrize(
    "command, argv, build",
    [
        (
            "finetune",
            ["--table", "t.csv", "--output", "out"],
            finetune._estimator,
        ),
        (
            "embed",
            ["--images", ".", "--output", "e.npy"],
            lambda args: embed._embedder(args, progress=False),
        ),
    ],
)
def test_the_command_passes_its_defaults_to_the_estimator(command, argv, build):
    args = build_parser().parse_args([command, *argv])
    params = build(args).get_params()
    for action in _subcommands()[command]._actions:
        if hasattr(action, "estimator_parameter"):
            _, parameter = action.estimator_parameter
            assert params[parameter] == getattr(args, action.dest), parameter
