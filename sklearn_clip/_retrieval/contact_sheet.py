"""An HTML contact sheet of search hits: thumbnails, scores and links.

People look at search results rather than read them. The sheet is one
self-contained HTML file: thumbnails are embedded (JPEG, base64) so it shows
in any browser wherever it is moved, even for formats browsers cannot show
(TIFF), and each thumbnail links to its original by a path relative to the
sheet.
"""

import base64
import html
import io
import os
from pathlib import Path

from PIL import Image

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: %(size)dpx; }
img { width: %(size)dpx; height: %(size)dpx; object-fit: contain; background: #eee; }
figcaption { font-size: 12px; overflow-wrap: anywhere; }
"""


def thumbnail_uri(path, size=192):
    """The image at ``path`` as a ``data:`` URI of a JPEG thumbnail."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_contact_sheet(path, hits, *, title="Search results", size=192):
    """Write an HTML page showing each hit's image, rank, score and path.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.html`` file to write; its folder is created if needed.
    hits : iterable of (str, str)
        ``(image path, caption)`` pairs, in the order shown; the caption is
        shown under the thumbnail (for example a rank and a score).
    title : str, default="Search results"
        The page's title and heading.
    size : int, default=192
        Thumbnail size in pixels.

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
    >>> Image.new("RGB", (40, 30), "red").save(folder / "red.png")
    >>> hits = [(folder / "red.png", "1: 0.93")]
    >>> sheet = write_contact_sheet(folder / "hits.html", hits)
    >>> "<img" in sheet.read_text() and 'href="red.png"' in sheet.read_text()
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = []
    for image_path, caption in hits:
        link = Path(os.path.relpath(Path(image_path).resolve(), path.parent.resolve()))
        figures.append(
            f'<figure><a href="{html.escape(link.as_posix())}">'
            f'<img src="{thumbnail_uri(image_path, size)}" '
            f'alt="{html.escape(str(image_path))}"></a>'
            f"<figcaption>{html.escape(caption)}<br>"
            f"{html.escape(str(image_path))}</figcaption></figure>"
        )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{_STYLE % {'size': size}}</style></head>\n"
        f'<body><h1>{html.escape(title)}</h1>\n<div class="grid">\n'
        + "\n".join(figures)
        + "\n</div></body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path
