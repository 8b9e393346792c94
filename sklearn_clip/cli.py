"""The ``sklearn-clip`` command: embed, zero-shot, finetune, export, evaluate, the demo.

Every subcommand is a thin layer over the public estimators, so what the command
does can be done in Python with the same objects. Each subcommand lives in its
own module under :mod:`sklearn_clip._cli`, with a ``register(commands)`` that
adds its parser and a ``run(args)`` that does the work.
"""

import argparse
import sys

from sklearn_clip._cli import (
    demo,
    duplicates,
    embed,
    evaluate,
    export,
    finetune,
    search,
    zero_shot,
)
from sklearn_clip._cli.common import CommandError

SUBCOMMANDS = (demo, embed, zero_shot, finetune, search, duplicates, export, evaluate)


def build_parser():
    """The argument parser of the ``sklearn-clip`` command."""
    parser = argparse.ArgumentParser(
        prog="sklearn-clip",
        description="CLIP embeddings, zero-shot classification and fine-tuning.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_package_version()}"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error instead of its one-line message",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.register(commands)
    return parser


def main(argv=None):
    """Run the ``sklearn-clip`` command; returns the exit status.

    0 on success; 2, with a one-line message and no traceback, for a bad
    argument or input (as ``argparse`` does for bad options) or a missing
    optional dependency (PyTorch where the command needs it); 1, also in one
    line, for any other error (a bug: ``--debug`` shows its traceback); 130
    when interrupted (Ctrl-C). Outputs are checked before any work and
    written atomically, so a failed or interrupted run leaves no partial
    output. A subcommand's ``run`` may return its own non-zero status (after
    saying why).
    """
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except KeyboardInterrupt:
        print(f"sklearn-clip {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return _report(args.command, exc)
    return status or 0


def _report(command, exc):
    """Say what went wrong in one line; the exit status it calls for."""
    if isinstance(exc, CommandError | OSError | ValueError):
        _error(command, exc)
        return 2
    message = _missing_package(command, exc) if isinstance(exc, ImportError) else None
    if message is not None:
        _error(command, message)
        return 2
    _error(command, f"{type(exc).__name__}: {exc} (run with --debug for details)")
    return 1


def _package_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sklearn-clip")
    except PackageNotFoundError:  # run from a checkout that was not installed
        from sklearn_clip import __version__

        return __version__


# What each command needs PyTorch for.
_NEEDS_TORCH = {
    "export": "to export a model",
    "finetune": "to fine-tune a model",
    "search": "to search with a PyTorch model",
    "duplicates": "to find duplicates with a PyTorch model",
    "embed": "to embed with a PyTorch model",
    "zero-shot": "to classify with a PyTorch model",
    "evaluate": "to evaluate a PyTorch model",
}
# The commands that run on exported models, without PyTorch.
_RUN_EXPORTS = {"search", "duplicates", "embed", "zero-shot", "evaluate"}


def _missing_package(command, exc):
    """The one-line message of a missing dependency, or None for another error.

    PyTorch is imported only where a command needs it, so its absence shows
    as a ``ModuleNotFoundError`` for ``torch`` at that point; the package's
    own messages for other optional packages already say what to install.
    """
    if (getattr(exc, "name", None) or "").partition(".")[0] == "torch":
        why = _NEEDS_TORCH.get(command, f"by sklearn-clip {command}")
        instead = ""
        if command in _RUN_EXPORTS:
            instead = "; or give a model exported by sklearn-clip export"
        return (
            f"PyTorch is needed {why} and is not installed: pip install torch "
            f"(see https://pytorch.org for GPU builds){instead}"
        )
    if "pip install" in str(exc):
        return str(exc)
    return None


def _error(command, exc):
    # One line, whatever the message: scripts and logs read it as one record.
    message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    print(
        f"sklearn-clip {command}: error: {message or type(exc).__name__}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
