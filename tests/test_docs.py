"""The API reference covers every public name, each with an example that runs.

The reference page is generated from the same list (``docs/_ext/api_reference.py``),
so a name exported later gets its page on the next build; these checks make sure
it also has something to show there. The examples themselves run as doctests
(``--doctest-modules``), which is why none may be skipped.
"""

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest
from numpydoc.docscrape import get_doc_object
from numpydoc.validate import get_validation_checks, validate

import sklearn_clip

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
api_reference = importlib.import_module("api_reference")

API = api_reference.api_objects()


def test_reference_lists_every_exported_name():
    listed = set(API)
    assert {f"sklearn_clip.{name}" for name in sklearn_clip.__all__} <= listed
    for module_name in api_reference.SUBMODULES:
        module = importlib.import_module(module_name)
        functions = {
            f"{module_name}.{name}"
            for name, obj in inspect.getmembers(module, inspect.isfunction)
            if not name.startswith("_") and obj.__module__ == module_name
        }
        assert functions <= listed, functions - listed


def test_reference_page_has_an_entry_for_each_name():
    text = api_reference.render_index()
    entries = re.findall(r"^   ~(\S+)$", text, flags=re.MULTILINE)
    assert sorted(entries) == sorted(API)


@pytest.mark.parametrize("name", sorted(API))
def test_public_name_has_a_runnable_example(name):
    examples = "\n".join(get_doc_object(API[name])["Examples"])
    assert ">>> " in examples, f"{name} has no doctest in its Examples section"
    assert "doctest: +SKIP" not in examples, f"{name} skips its example"


def _validated_names():
    """Every public name and the members its page shows, as the build validates."""
    for name, obj in sorted(API.items()):
        yield name
        if inspect.isclass(obj):
            yield from (f"{name}.{m}" for m in api_reference.documented_members(obj))


def test_validation_reports_what_it_should():
    # json.dumps documents its parameters in prose, not in a Parameters
    # section: the check set must flag it.
    checks = get_validation_checks(api_reference.VALIDATION_CHECKS)
    codes = {code for code, _ in validate("json.dumps")["errors"]}
    assert "PR01" in codes & checks


@pytest.mark.parametrize("name", list(_validated_names()))
def test_docstring_passes_numpydoc_validation(name):
    # The same checks the docs build applies (numpydoc_validation_checks).
    checks = get_validation_checks(api_reference.VALIDATION_CHECKS)
    errors = [f"{c}: {m}" for c, m in validate(name)["errors"] if c in checks]
    assert not errors, errors


def _check_site():
    spec = importlib.util.spec_from_file_location(
        "check_site", DOCS.parent / ".ci" / "check_site.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_check_fails_a_page_overwritten_by_another_of_the_same_name(tmp_path):
    # Sphinx's own search page once overwrote the guide's search page: the
    # built page then carries another title than its source's heading.
    check_site = _check_site()
    (tmp_path / "retrieval.html").write_text(
        "<html><head><title>Search - sklearn-clip</title></head></html>"
    )
    (tmp_path / "faq.html").write_text(
        "<html><head><title>FAQ and troubleshooting &#8212; sklearn-clip</title>"
    )
    problems = {
        page.name: why
        for page, why in check_site.wrong_titles(tmp_path)
        if page.name in ("retrieval.html", "faq.html")
    }
    assert problems == {
        "retrieval.html": "title 'Search - sklearn-clip', but its source says "
        "'Search and duplicates'"
    }
