"""An evaluation dataset: images with labels or captions, from several sources.

Whatever the source, the data becomes one :class:`EvaluationData`: each
distinct image once, its class label (if the source has labels), and the
distinct captions with ``(image, caption)`` pairs (if it has captions), so
that an image with five captions is one image. What cannot be used (an empty
class folder, a row whose image file is missing, a row without a label) is
left out and named in ``problems``, and the rest is evaluated.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _image_suffixes():
    """The file suffixes of the image formats Pillow can open."""
    from PIL import Image

    Image.init()
    return {
        suffix
        for suffix, form in Image.registered_extensions().items()
        if form in Image.OPEN
    }


@dataclass
class EvaluationData:
    """Images with their labels and captions, ready to evaluate.

    Parameters
    ----------
    images : list
        One row per distinct image: paths, bytes, PIL images, arrays, or
        Hugging Face ``datasets`` image values.
    labels : ndarray of shape (n_images,) or None
        Each image's class label, or None when the data has no labels.
    captions : list of str or None
        The distinct captions, or None when the data has no captions.
    pairs : ndarray of shape (n_pairs, 2) or None
        ``(image row, caption row)`` of each caption of each image.
    name : str, default="data"
        What the results call the dataset.
    problems : list of str
        What was left out, and why.

    Examples
    --------
    >>> from sklearn_clip.evaluate import EvaluationData
    >>> data = EvaluationData(["a.png", "b.png"], labels=["cat", "dog"])
    >>> data.n_images, data.classes.tolist()
    (2, ['cat', 'dog'])
    """

    images: list
    labels: np.ndarray | None = None
    captions: list | None = None
    pairs: np.ndarray | None = None
    name: str = "data"
    problems: list = field(default_factory=list)

    def __post_init__(self):
        self.images = list(self.images)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=object)
        if self.pairs is not None:
            self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)

    @property
    def n_images(self):
        """The number of distinct images."""
        return len(self.images)

    @property
    def classes(self):
        """The sorted class labels (an empty array without labels)."""
        if self.labels is None:
            return np.array([], dtype=object)
        return np.unique(self.labels)


def load_data(data, *, image_column="image", label_column="label",
              caption_column="caption", name=None):  # fmt: skip
    """Any supported source -> :class:`EvaluationData`; see ``evaluate``."""
    if isinstance(data, EvaluationData):
        return data
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if path.is_dir():
            return from_class_folders(path, name=name)
        if path.is_file():
            return from_table(
                _read_table(path),
                image_column=image_column,
                label_column=label_column,
                caption_column=caption_column,
                name=name or path.stem,
                base=path.parent,
            )
        raise FileNotFoundError(
            f"no such dataset: {str(path)!r}; give a folder of class folders, a "
            ".csv or .parquet table, a DataFrame or a datasets.Dataset"
        )
    if hasattr(data, "features") and hasattr(data, "column_names"):
        data = _datasets_frame(data, label_column)
    if hasattr(data, "columns"):
        return from_table(
            data,
            image_column=image_column,
            label_column=label_column,
            caption_column=caption_column,
            name=name or "table",
        )
    raise TypeError(
        "data must be a folder of class folders, a table file, a pandas "
        f"DataFrame, a datasets.Dataset or an EvaluationData; got {type(data).__name__}"
    )


def from_class_folders(folder, *, name=None):
    """One class per sub-folder of ``folder``; its images are those of the class."""
    images, labels, problems = [], [], []
    suffixes = _image_suffixes()
    classes = sorted(p for p in Path(folder).iterdir() if p.is_dir())
    for class_folder in classes:
        files = sorted(
            str(p)
            for p in class_folder.rglob("*")
            if p.suffix.lower() in suffixes and p.is_file()
        )
        if not files:
            problems.append(
                f"class folder {str(class_folder)!r} holds no image file: class "
                f"{class_folder.name!r} is left out (add images or remove the folder)"
            )
        images += files
        labels += [class_folder.name] * len(files)
    if not images:
        raise ValueError(
            f"no class folder with images under {str(folder)!r}: give a folder "
            "with one sub-folder of images per class"
        )
    return EvaluationData(
        images, labels=labels, name=name or Path(folder).name, problems=problems
    )


def _read_table(path):
    import pandas as pd

    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ValueError(f"tables must be .csv or .parquet; got {str(path)!r}")


def _datasets_frame(dataset, label_column):
    """A Hugging Face dataset as a DataFrame, class-label ids as their names."""
    import pandas as pd

    columns = {name: list(dataset[name]) for name in dataset.column_names}
    feature = dataset.features.get(label_column)
    if feature is not None and hasattr(feature, "int2str"):
        columns[label_column] = [feature.int2str(int(i)) for i in columns[label_column]]
    return pd.DataFrame(columns)


def _image_key(item, row):
    """Rows with the same path or bytes are one image; other values are their own."""
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    if isinstance(item, bytes):
        return item
    if isinstance(item, dict) and item.get("path") and not item.get("bytes"):
        return item["path"]
    return ("row", row)


def _present(value):
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def from_table(table, *, image_column="image", label_column="label",
               caption_column="caption", name="table", base=None):  # fmt: skip
    """Rows of (image, label and/or caption); rows of one image are grouped."""
    if image_column not in table.columns:
        raise ValueError(
            f"the table has no image column {image_column!r}; its columns are "
            f"{list(table.columns)!r} (pass image_column=...)"
        )
    has_labels = label_column in table.columns
    has_captions = caption_column in table.columns
    if not (has_labels or has_captions):
        raise ValueError(
            f"the table needs a label column {label_column!r} or a caption column "
            f"{caption_column!r}; its columns are {list(table.columns)!r}"
        )
    rows = _usable_rows(table, image_column, base, (label_column, caption_column))
    images, labels, first, problems = [], [], {}, rows.problems
    caption_rows, pairs = {}, []
    for index, item, values in rows.kept:
        key = _image_key(item, index)
        if key not in first:
            first[key] = len(images)
            images.append(item)
            labels.append(values[0] if has_labels else None)
        elif has_labels and values[0] != labels[first[key]]:
            problems.append(
                f"row {index!r}: image {_shown(item)} is labelled {values[0]!r} "
                f"here and {labels[first[key]]!r} before; the first label is kept"
            )
        if has_captions and _present(values[1]):
            caption = str(values[1])
            pairs.append(
                (first[key], caption_rows.setdefault(caption, len(caption_rows)))
            )
    return EvaluationData(
        images,
        labels=labels if has_labels else None,
        captions=list(caption_rows) if has_captions else None,
        pairs=np.array(pairs, dtype=np.int64) if has_captions else None,
        name=name,
        problems=problems,
    )


def _shown(item):
    return repr(os.fspath(item)) if isinstance(item, str | os.PathLike) else "given"


@dataclass
class _Rows:
    kept: list
    problems: list


def _usable_rows(table, image_column, base, value_columns):
    """Rows whose image exists and that have a label (where labels are given)."""
    kept, problems = [], []
    columns = [c if c in table.columns else None for c in value_columns]
    for position, index in enumerate(table.index):
        item = table[image_column].iloc[position]
        values = [None if c is None else table[c].iloc[position] for c in columns]
        if not _present(item):
            problems.append(f"row {index!r}: no image; the row is left out")
            continue
        if isinstance(item, str | os.PathLike) and base is not None:
            item = str(Path(base, item)) if not Path(item).is_absolute() else item
        if isinstance(item, str | os.PathLike) and not Path(item).is_file():
            problems.append(
                f"row {index!r}: image file {str(item)!r} does not exist; the "
                "row is left out (fix the path or remove the row)"
            )
            continue
        if columns[0] is not None and not _present(values[0]):
            problems.append(f"row {index!r}: no label; the row is left out")
            continue
        kept.append((index, item, values))
    if not kept:
        raise ValueError(f"no usable row in the table: {'; '.join(problems[:3])}")
    return _Rows(kept, problems)
