"""Sphinx configuration of the sklearn-clip site.

Build it with ``python -m sphinx -W -b html docs docs/_build/html``. The API
reference is generated from the package's public names (``_ext/api_reference.py``),
the gallery runs ``examples/plot_*.py`` and the notebooks in ``notebooks/`` are
copied here and executed, so adding a page, an example or a notebook is a
one-file change.
"""

import json
import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT))

# Before anything imports huggingface_hub: no progress bars in the gallery and
# notebook outputs (their kernels inherit this environment). No MPLBACKEND
# here: the kernels need their inline backend for figures to reach the pages,
# and sphinx-gallery picks its own.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import api_reference  # noqa: E402

import sklearn_clip  # noqa: E402

project = "sklearn-clip"
author = "sklearn-clip developers"
copyright = "sklearn-clip developers"
release = version = sklearn_clip.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_nb",
    # A copy button on every code block; prompts and outputs are left out.
    "sphinx_copybutton",
]
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
templates_path = ["_templates"]
# sphinx-gallery writes a notebook beside each example page: a download, not a page.
exclude_patterns = [
    "_build",
    "_ext",
    "_templates",
    "**.ipynb_checkpoints",
    "auto_examples/*.ipynb",
]

# -- The API reference --------------------------------------------------------
api_reference.write_index(HERE)
autosummary_generate = True
# The page template (_templates/autosummary/entry.rst) lists each class's
# methods, inherited ones included, and links to its user-guide page.
autosummary_context = api_reference.template_context()
autodoc_default_options = {"member-order": "groupwise"}
autodoc_typehints = "none"
# numpydoc writes the class's Methods table from autodoc's members.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Validation of every docstring on the API pages; the check set and its
# reasons are in _ext/api_reference.py, shared with tests/test_docs.py.
numpydoc_validation_checks = api_reference.VALIDATION_CHECKS
numpydoc_validation_exclude = api_reference.VALIDATION_EXCLUDE

# -- The gallery ---------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Every plot_*.py is executed; a failing example fails the build.
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("sklearn_clip",),
    "backreferences_dir": "api/generated/backreferences",
    "remove_config_comments": True,
    "download_all_examples": False,
    "min_reported_time": 5,
}

# -- The notebooks -------------------------------------------------------------
# Sphinx reads sources only under docs/: the notebooks are copied next to the
# pages (docs/notebooks is a build artefact, ignored by git) and executed here.
_notebooks = HERE / "notebooks"
shutil.rmtree(_notebooks, ignore_errors=True)
shutil.copytree(ROOT / "notebooks", _notebooks, ignore=shutil.ignore_patterns(".*"))


def _add_download_link(notebook):
    """Put a link to download the notebook itself under its title."""
    content = json.loads(notebook.read_text(encoding="utf-8"))
    link = {
        "cell_type": "markdown",
        "id": "download-this-notebook",
        "metadata": {},
        "source": [f"{{download}}`Download this notebook <{notebook.name}>`"],
    }
    content["cells"].insert(1, link)
    notebook.write_text(json.dumps(content, indent=1), encoding="utf-8")


for _notebook in sorted(_notebooks.glob("*.ipynb")):
    _add_download_link(_notebook)
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "sklearn-clip"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    # The version beside the project name, on every page.
    "navbar_start": ["navbar-logo", "navbar-version"],
    "header_links_before_dropdown": 7,
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # The side-by-side code of the migration page needs the width.
    "secondary_sidebar_items": {"**": ["page-toc"], "migrating": []},
    # The left sidebar lists the pages of the section being read (the user
    # guide, getting started, the notebooks), two levels open.
    "show_nav_level": 2,
}
# The landing page needs the width; every other page keeps the section list.
html_sidebars = {"index": []}
html_show_sourcelink = False


# -- The user guide's order ----------------------------------------------------
# index.md, getting_started.md and user_guide.md name their pages in reading
# order. Some named pages are written by work that lands one piece at a time:
# a name without a page is left out of the toctree before Sphinx reads it,
# instead of failing the build.
_TOCTREE = re.compile(r"(```\{toctree\}\n)(.*?)(```)", re.DOTALL)


def _drop_unwritten_pages(app, docname, source):
    def keep(line):
        name = line.strip()
        return not re.fullmatch(r"[\w/-]+", name) or name in app.env.found_docs

    def filter_block(match):
        lines = match.group(2).splitlines(keepends=True)
        return match.group(1) + "".join(filter(keep, lines)) + match.group(3)

    source[0] = _TOCTREE.sub(filter_block, source[0])


def _skip_generated_request_methods(app, what, name, obj, skip, options):
    return True if api_reference.SKIPPED_MEMBERS.fullmatch(name) else None


def setup(app):
    app.connect("source-read", _drop_unwritten_pages)
    app.connect("autodoc-skip-member", _skip_generated_request_methods)
