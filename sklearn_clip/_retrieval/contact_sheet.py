"""An HTML contact sheet of search hits: thumbnails, scores and links.

People look at search results rather than read them; a moment of a video is
shown as its frame, named ``file @ 12.4 s``. The sheet is one
self-contained HTML file: thumbnails are embedded (JPEG, base64) so it shows
in any browser wherever it is moved, even for formats browsers cannot show
(TIFF), and each thumbnail links to its original by a relative link.

File names are data, not markup: a link is the file's path relative to the
sheet, percent-encoded byte by byte (so ``#``, ``?``, ``%41``, ``:``, a
newline or a name that is not UTF-8 give a link to that very file and never a
``javascript:`` one), and only files inside the searched folder are linked or
shown (a symbolic link pointing out of it is listed, not followed). The page
allows no script at all (its Content-Security-Policy), whatever it contains.
"""

import base64
import html
import io
import os
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from sklearn_clip._encoding.video import ClipReader, VideoSource
from sklearn_clip._files import check_output, display_path, write_output

# Images only from the page itself (data: URIs), inline style, nothing else:
# no script, no frame, no request anywhere.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: %(size)dpx; }
img { width: %(size)dpx; height: %(size)dpx; object-fit: contain; background: #eee; }
figcaption { font-size: 12px; overflow-wrap: anywhere; white-space: pre-wrap; }
"""


def thumbnail_uri(path, size=192, time=None):
    """The image at ``path`` (or the video's frame at ``time`` seconds) as a
    ``data:`` URI of a JPEG thumbnail."""
    if time is not None:
        with ClipReader(VideoSource(path)) as clip:
            image = Image.fromarray(clip.frame_at(time))
    else:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def relative_link(target, sheet_folder):
    """The percent-encoded relative URL of ``target`` seen from ``sheet_folder``.

    Encoding the path's bytes leaves only letters, digits, ``_.-~`` and ``/``,
    so no part of a file name can become a URL scheme, query or fragment.

    Examples
    --------
    >>> from sklearn_clip._retrieval.contact_sheet import relative_link
    >>> relative_link("/photos/javascript:alert(1).png", "/photos")
    'javascript%3Aalert%281%29.png'
    >>> relative_link("/photos/a/100%41 #1?.png", "/photos/sheets")
    '../a/100%2541%20%231%3F.png'
    """
    relative = os.path.relpath(target, sheet_folder)
    return quote(os.fsencode(Path(relative).as_posix()), safe="/")


def _inside(path, root):
    return path == root or root in path.parents


def _figure(image_path, caption, sheet_folder, root, size, time=None):
    # A moment of a video is named "file @ 12.4 s" and links to that time
    # (a media fragment, made of digits only).
    moment = "" if time is None else f" @ {time:.1f} s"
    name = html.escape(display_path(image_path) + moment)
    target = Path(image_path).resolve()
    if not _inside(target, root):
        return (
            f"<figure><figcaption>{html.escape(caption)}<br>{name}<br>"
            "(links outside the searched folder; not shown)</figcaption></figure>"
        )
    fragment = "" if time is None else f"#t={time:.3f}"
    link = html.escape(relative_link(target, sheet_folder) + fragment)
    return (
        f'<figure><a href="{link}"><img src="{thumbnail_uri(target, size, time)}" '
        f'alt="{name}"></a><figcaption>{html.escape(caption)}<br>{name}'
        "</figcaption></figure>"
    )


def _summary(model, n_images, skipped):
    lines = []
    if model is not None:
        lines.append(f"Model: {html.escape(display_path(model))}")
    if n_images is not None:
        lines.append(f"Images searched: {n_images}")
    lines.append(f"Files skipped: {len(skipped)}")
    items = "".join(
        f"<li>{html.escape(display_path(source))}: {html.escape(reason)}</li>"
        for source, reason in skipped
    )
    details = f"<details><summary>skipped files</summary><ul>{items}</ul></details>"
    return "<p>" + "<br>".join(lines) + "</p>" + (details if skipped else "")


def write_contact_sheet(
    path,
    hits,
    *,
    root,
    title="Search results",
    size=192,
    model=None,
    n_images=None,
    skipped=(),
):
    """Write an HTML page showing each hit's image, rank, score and path.

    The page is written atomically (the old file or the whole new one), by
    the package's output rule: ``path`` must end in ``.html``, and an existing
    page is replaced, never one of the hits.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.html`` file to write; its folder is created if needed.
    hits : iterable of (str, str) or (str, str, float)
        ``(image path, caption)`` pairs, in the order shown; the caption is
        shown under the thumbnail (for example a rank and a score). A third
        value, a time in seconds (or None), makes the hit a moment of a
        video: its frame at that time is shown, named ``file @ 12.4 s``,
        and linked at that time.
    root : str or os.PathLike
        The searched folder: only files inside it (after following symbolic
        links) are shown and linked.
    title : str, default="Search results"
        The page's title and heading.
    size : int, default=192
        Thumbnail size in pixels.
    model : str, default=None
        The model that ranked the hits, named on the page.
    n_images : int, default=None
        How many images were searched, stated on the page.
    skipped : iterable of (str, str), default=()
        ``(path, reason)`` of each file left out of the search, listed.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from sklearn_clip._retrieval.contact_sheet import write_contact_sheet
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (40, 30), "red").save(folder / "red #1.png")
    >>> hits = [(folder / "red #1.png", "1: 0.93")]
    >>> sheet = write_contact_sheet(folder / "hits.html", hits, root=folder)
    >>> 'href="red%20%231.png"' in sheet.read_text()
    True
    """
    hits = list(hits)
    # The package's output rule (an existing page is replaced, an image
    # never), checked before any thumbnail is made.
    path = check_output(
        path, (".html",), overwrite=True, inputs=[h[0] for h in hits], option="path"
    )
    root = Path(root).resolve()
    sheet_folder = path.parent.resolve()  # resolved like the targets
    figures = [_figure(*hit[:2], sheet_folder, root, size, *hit[2:]) for hit in hits]
    skipped, title = list(skipped), html.escape(display_path(title))
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        f"<title>{title}</title>"
        f"<style>{_STYLE % {'size': size}}</style></head>\n"
        f"<body><h1>{title}</h1>\n"
        f'{_summary(model, n_images, skipped)}\n<div class="grid">\n'
        + "\n".join(figures)
        + "\n</div></body></html>\n"
    )
    return write_output(
        path, lambda temporary: Path(temporary).write_text(page, "utf-8")
    )
