"""pytest runs the pages' examples (``--doctest-glob=*.md``); the build's own
files are not tests: the Sphinx configuration, its extension, and what a build
writes here (the site, the generated API pages, the executed gallery and the
copied notebooks)."""

collect_ignore = ["conf.py", "_ext"]
collect_ignore_glob = ["_build", "api", "auto_examples", "notebooks"]
