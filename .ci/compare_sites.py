"""Compare the numbers of two builds of the documentation site.

CI builds the site twice: once as the machine is, once as if its CPU had the
other kind of bfloat16 support (``SKLEARN_CLIP_CPU_BF16``), where
``dtype="auto"`` means the other precision. Every example that shows numbers
pins ``dtype="float32"``, so the two sites must show the same numbers on every
page. This script reads the text of every HTML page of both builds, drops what
differs between any two runs (the gallery's running times, progress bars'
rates and clocks, temporary folder names) and fails, naming the page and the
first differing numbers, when the numbers left differ by more than one unit
of their last printed digit (two float32 runs on one machine can land either
side of a rounding boundary; a page computed in another precision differs by
far more, or prints another dtype's name).

Usage: ``python .ci/compare_sites.py docs/_build/html docs/_build/html-other``.
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

# Pages that only list how long each example took.
SKIPPED_PAGES = {"sg_execution_times.html", "auto_examples/sg_execution_times.html"}
# Text that differs between two runs on the same machine.
VOLATILE = [
    re.compile(r"Total running time of the script:[^)]*\)"),
    re.compile(r"\d+(\.\d+)?\s*(it/s|s/it|MB/s)"),  # progress bars' rates
    re.compile(r"\[\d+:\d+(:\d+)?<[^\]]*\]"),  # and their clocks
    re.compile(r"\b(tmp|pytest-)[\w.-]+"),  # temporary folders
    re.compile(r"(trained|took|in) \d+(\.\d+)? ?(s|seconds|ms)\b"),  # timings
]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


class _Text(HTMLParser):
    """The visible text of a page, without its scripts and styles."""

    def __init__(self):
        super().__init__()
        self.parts, self._hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style") and self._hidden > 0

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def page_numbers(path):
    """The numbers a page shows, in order, after the volatile text is dropped."""
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    text = " ".join(parser.parts)
    for pattern in VOLATILE:
        text = pattern.sub(" ", text)
    return NUMBER.findall(text)


def _same(first, second):
    """Whether two printed numbers agree to one unit of their last digit."""
    if first == second:
        return True
    digits = max(len(n.partition(".")[2].partition("e")[0]) for n in (first, second))
    if "e" in first + second or digits == 0:
        return False  # integers and exponents are counts, names, sizes: exact
    return abs(float(first) - float(second)) <= 10**-digits * 1.0001


def differences(first_site, second_site):
    """``[(page, message)]`` for every page whose numbers differ."""
    found = []
    for page in sorted(first_site.rglob("*.html")):
        name = page.relative_to(first_site).as_posix()
        if name in SKIPPED_PAGES or name.startswith("_"):
            continue
        other = second_site / name
        if not other.is_file():
            found.append((name, "missing from the second build"))
            continue
        first, second = page_numbers(page), page_numbers(other)
        if len(first) != len(second) or not all(map(_same, first, second)):
            at = next(
                (i for i, (a, b) in enumerate(zip(first, second)) if not _same(a, b)),
                min(len(first), len(second)),
            )
            found.append(
                (
                    name,
                    f"numbers differ from the {at + 1}th on: {first[at : at + 5]} "
                    f"against {second[at : at + 5]}",
                )
            )
    return found


def main(argv):
    first_site, second_site = (Path(arg) for arg in argv[1:3])
    found = differences(first_site, second_site)
    for name, message in found:
        print(f"{name}: {message}")
    pages = sum(1 for _ in first_site.rglob("*.html"))
    print(f"{pages} pages compared, {len(found)} with different numbers")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
