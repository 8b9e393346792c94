"""One command-line dialect: every subcommand names a shared concept alike.

The test walks every subcommand's options, as ``--help`` lists them, and checks
that each concept several subcommands share has one option name and one set
of values, and that a retired spelling is only ever an alias.
"""

import argparse
from importlib.metadata import version

import pytest

from sklearn_clip import cli
from sklearn_clip.cli import build_parser, main

# Concept: the option that names it everywhere, and the spellings that remain
# only as aliases of it (older releases used them).
CONCEPTS = {
    "model": ("--model", ()),
    "output": ("--output", ()),
    "overwrite": ("--overwrite", ()),
    "batch_size": ("--batch-size", ()),
    "device": ("--device", ()),
    "dtype": ("--dtype", ()),
    "cache_dir": ("--cache-dir", ()),
    "on_error": ("--on-error", ()),
    "random_state": ("--random-state", ("--seed",)),
    "n_jobs": ("--n-jobs", ("--workers",)),
    "revision": ("--revision", ()),
}
# The commands that load a model for inference and read images.
ENCODING_COMMANDS = {"embed", "zero-shot", "search", "duplicates", "evaluate"}


def _subcommands(parser=None):
    """The subcommands' parsers, by name, of ``parser`` (a new one if None)."""
    parser = build_parser() if parser is None else parser
    action = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    return action.choices


def _options(parser):
    return {a.dest: a for a in parser._actions if a.option_strings}


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_shared_concept_has_one_name(command):
    parser = _subcommands()[command]
    for dest, action in _options(parser).items():
        if dest in CONCEPTS:
            name, aliases = CONCEPTS[dest]
            assert action.option_strings[0] == name, (command, dest)
            assert set(action.option_strings[1:]) <= set(aliases), (command, dest)
    # No concept is a positional argument in one command and an option in others.
    positionals = {a.dest for a in parser._actions if not a.option_strings}
    assert not positionals & set(CONCEPTS), command
    # A folder of images to read is --images everywhere (search said --index).
    folders = [a for a in parser._actions if "--index" in a.option_strings]
    assert all(a.option_strings[0] == "--images" for a in folders), command


def test_every_shared_concept_has_one_set_of_values():
    choices = {}
    for command, parser in _subcommands().items():
        for dest, action in _options(parser).items():
            if dest in CONCEPTS and action.choices is not None:
                choices.setdefault(dest, {})[command] = tuple(action.choices)
    # The fine-tuner leaves an unusable pair out ("skip"); the encoders keep
    # every row and give an unreadable one NaN ("nan"): two meanings, two values.
    on_error = choices.pop("on_error")
    assert on_error.pop("finetune") == ("raise", "skip")
    assert set(on_error.values()) == {("raise", "nan")}
    for dest, per_command in choices.items():
        assert len(set(per_command.values())) == 1, (dest, per_command)


@pytest.mark.parametrize("command", sorted(ENCODING_COMMANDS))
def test_every_encoding_command_takes_the_encoding_options(command):
    options = _options(_subcommands()[command])
    for dest in ("model", "batch_size", "device", "dtype", "cache_dir"):
        assert dest in options, (command, dest)
    # evaluate names every unreadable image in its report and goes on: it has
    # no other way to treat them, so no --on-error.
    assert ("on_error" in options) is (command != "evaluate"), command


def test_version_names_the_installed_package(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"sklearn-clip {version('sklearn-clip')}"


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch, capsys, tmp_path):
    def broken(args):
        raise RuntimeError("something inside broke")

    parser = build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    _subcommands(parser)["demo"].set_defaults(run=broken)
    argv = ["demo", "--output", str(tmp_path / "demo")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "RuntimeError: something inside broke" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="inside broke"):
        main(["--debug", *argv])
