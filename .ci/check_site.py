"""Check the built documentation site: internal links, API pages and figures.

Sphinx's ``linkcheck`` builder checks external URLs, which CI cannot reach,
and does not follow links between the site's own pages to their anchors. This
script reads every HTML file of the built site and fails when

- a relative link or image points at a file that is not there, or at an
  anchor (``page.html#section``) that the page does not define;
- a public name of the API reference (``docs/_ext/api_reference.py``) has no
  page;
- a gallery example or a notebook page shows no figure;
- a page's title is not the first heading of its source (``docs/retrieval.md``
  must build to ``retrieval.html`` titled "Search and near-duplicates"): a page
  overwritten by another one of the same name, such as Sphinx's own
  ``search.html``, fails here.

Usage: ``python .ci/check_site.py docs/_build/html``.
"""

import json
import re
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]


class _Page(HTMLParser):
    """The anchors a page defines and the links it makes."""

    def __init__(self):
        super().__init__()
        self.anchors, self.links, self.images = set(), [], []
        self.title, self._in_title = "", False

    def handle_endtag(self, tag):
        self._in_title = self._in_title and tag != "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in_title = self._in_title or tag == "title"
        for key in ("id", "name"):
            if attrs.get(key):
                self.anchors.add(attrs[key])
        if tag in ("a", "link") and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            self.links.append(attrs["src"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def broken_links(site):
    """``[(page, link, reason)]`` for every internal link that does not resolve."""
    # _static holds the theme's own template fragments, not pages.
    paths = [p for p in sorted(site.rglob("*.html")) if "_static" not in p.parts]
    pages = {path: _parse(path) for path in paths}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("#") and not link[1:]:
                continue  # external, or a bare "#"
            target = (
                (path.parent / unquote(parts.path)).resolve() if parts.path else path
            )
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append((path, link, "no such file"))
            elif parts.fragment and target.suffix == ".html":
                anchors = pages[target].anchors if target in pages else set()
                if unquote(parts.fragment) not in anchors:
                    broken.append((path, link, "no such anchor"))
    return broken


def missing_api_pages(site):
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    import api_reference

    return [
        name
        for name in api_reference.api_objects()
        if not (site / "api" / "generated" / f"{name}.html").exists()
    ]


def pages_without_figures(site):
    """Gallery examples and notebook pages that show no image."""
    examples = sorted((ROOT / "examples").glob("plot_*.py"))
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    expected = [site / "auto_examples" / f"{p.stem}.html" for p in examples]
    expected += [site / "notebooks" / f"{p.stem}.html" for p in notebooks]
    missing = []
    for page in expected:
        if not page.exists():
            missing.append((page, "no page"))
        elif not any("_images/" in src for src in _parse(page).images):
            missing.append((page, "no figure"))
    return missing


def _plain(text):
    """A heading without markup, as the page's ``<title>`` shows it."""
    text = re.sub(r"\{\w+\}`~?([^`]*)`", r"\1", text)  # MyST roles
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links
    return " ".join(re.sub(r"[`*]", "", unescape(text)).split())


def _first_heading(source):
    """The title a source file gives its page: its first top-level heading."""
    if source.suffix == ".ipynb":
        cells = json.loads(source.read_text(encoding="utf-8"))["cells"]
        text = "\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
        )
    elif source.suffix == ".py":  # a gallery example: an RST docstring
        text = source.read_text(encoding="utf-8").split('"""')[1]
        return _plain(re.search(r"^(.+)\n[=]{3,}$", text, re.M).group(1))
    else:
        text = source.read_text(encoding="utf-8")
    return _plain(re.search(r"^# (.+)$", text, re.M).group(1))


def sources_and_pages(site):
    """``[(source, built page)]`` for every page written from a file of the repo."""
    docs = ROOT / "docs"
    built = ("_build", "api", "auto_examples", "notebooks", "_templates", "_ext")
    pairs = [
        (md, site / md.relative_to(docs).with_suffix(".html"))
        for md in sorted(docs.rglob("*.md"))
        if not set(md.relative_to(docs).parts) & set(built)
    ]
    pairs += [
        (nb, site / "notebooks" / f"{nb.stem}.html")
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb"))
    ]
    pairs += [
        (py, site / "auto_examples" / f"{py.stem}.html")
        for py in sorted((ROOT / "examples").glob("plot_*.py"))
    ]
    return pairs


def wrong_titles(site):
    """Pages whose title is not their source's heading, or that were not built."""
    wrong = []
    for source, page in sources_and_pages(site):
        if not page.exists():
            wrong.append((page, f"not built from {source.relative_to(ROOT)}"))
            continue
        title = " ".join(unescape(_parse(page).title).split())
        heading = _first_heading(source)
        if not title.startswith(heading):
            wrong.append((page, f"title {title!r}, but its source says {heading!r}"))
    return wrong


def main(site):
    site = Path(site).resolve()
    problems = [
        f"{p.relative_to(site)}: {link} ({why})" for p, link, why in broken_links(site)
    ]
    problems += [
        f"API reference: no page for {name}" for name in missing_api_pages(site)
    ]
    problems += [
        f"{p.relative_to(site)}: {why}" for p, why in pages_without_figures(site)
    ]
    problems += [f"{p.relative_to(site)}: {why}" for p, why in wrong_titles(site)]
    for problem in problems:
        print(problem)
    n_pages = len(list(site.rglob("*.html")))
    print(f"checked {n_pages} pages: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(
        main(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "_build" / "html")
    )
