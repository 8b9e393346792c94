"""``sklearn-clip search``: the images of a folder nearest to a text or an image."""

import sys
import warnings

from sklearn_clip._cli.common import (
    CommandError,
    add_cache_option,
    add_model_options,
    add_output_options,
    add_video_options,
    image_files,
    video_option,
)
from sklearn_clip._cli.options import NEIGHBORS, estimator_option
from sklearn_clip._files import check_output, display_path
from sklearn_clip._options import ON_ERROR_OPTIONS

SHEET_SUFFIXES = (".html",)


def register(commands):
    parser = commands.add_parser(
        "search",
        help="search a folder of images by text or by an example image",
        description=(
            "Embed the images of a folder (reusing --cache-dir) and print the k "
            "nearest to a text query (or to an image) with their paths and "
            "cosine similarities; in a folder with videos, the k nearest "
            "moments (file @ time). Unreadable files are listed and left out."
        ),
    )
    add_model_options(parser, NEIGHBORS)
    add_collection_options(parser, "--images", "--index")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--query", help="a text, for example 'a red car at night'")
    query.add_argument("--query-image", help="an image file to search by example")
    estimator_option(
        parser,
        NEIGHBORS,
        "n_neighbors",
        "-k",
        type=int,
        dest="k",
        help="hits to show (the searcher's n_neighbors)",
    )
    add_output_options(parser, "an .html contact sheet of the hits", required=False)
    parser.set_defaults(run=run)


def add_collection_options(parser, *flags):
    """The folder to search (``flags``: its option and older aliases), what an
    unreadable file in it does, and the cache of its embeddings."""
    parser.add_argument(
        *flags, dest="folder", required=True, help="a folder of images or videos"
    )
    parser.set_defaults(folder_option=flags[0])
    estimator_option(
        parser,
        NEIGHBORS,
        "on_error",
        "--on-error",
        choices=ON_ERROR_OPTIONS,
        # Departs from the estimator's "raise": a folder searched by hand
        # usually holds a stray file, which is listed and left out instead.
        default="nan",
        help="what an unreadable file does: 'nan' lists it and leaves it out, "
        "'raise' stops with an error naming it; 'nan' unlike the estimator's "
        "'raise', as a folder often holds a stray file",
    )
    add_cache_option(parser, NEIGHBORS)
    add_video_options(parser)


def fit_folder(args):
    """A searcher fitted on the folder's images; unreadable files are listed."""
    from sklearn_clip import CLIPNearestNeighbors

    paths = image_files(args.folder, args.folder_option)
    searcher = CLIPNearestNeighbors(
        args.model,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        on_error=args.on_error,
        cache_dir=args.cache_dir,
        progress=True,  # embedding the folder is the long step
        video=video_option(args),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the failures are listed below instead
        searcher.fit(paths)
    for record in searcher.input_errors_:
        print(
            f"skipped unreadable file {display_path(record['source'])}: "
            f"{record['message']}",
            file=sys.stderr,
        )
    return searcher, paths


def run(args):
    if args.output:  # refused before the work, never after it
        check_output(
            args.output,
            SHEET_SUFFIXES,
            overwrite=args.overwrite,
            inputs=(args.query_image,),
        )
    searcher, paths = fit_folder(args)
    if args.k < 1:
        raise CommandError("-k must be at least 1")
    if args.query is not None:
        query, modality, title = [args.query], "text", args.query
    else:
        query, modality, title = [args.query_image], "image", args.query_image
    searcher.set_params(on_error="raise")  # an unreadable query is an error
    hits = []
    for rank, (row, time, distance) in enumerate(
        _nearest(searcher, query, modality, args.k), 1
    ):
        similarity = 1.0 - float(distance)
        where = display_path(paths[row]) + moment_suffix(time)
        print(f"{rank}\t{similarity:.4f}\t{where}")
        hits.append((paths[row], f"{rank}: similarity {similarity:.3f}", time))
    if args.output:
        write_sheet(args, searcher, hits, title)


def _nearest(searcher, query, modality, k):
    """``(row, time, distance)`` of the hits: moments where the folder holds
    videos (time None for a still image), else rows."""
    if "frames_" in searcher.__dict__:
        import numpy as np

        readable = int(np.isfinite(searcher.frames_["embedding"]).all(axis=1).sum())
        k = min(k, readable)
        moments = searcher.search_moments(query, k, query_modality=modality)
        times = [None if t != t else float(t) for t in moments["time"]]
        return list(zip(moments["row"], times, moments["distance"]))
    readable = searcher.n_samples_fit_ - len(searcher.input_errors_)
    distances, indices = searcher.kneighbors(
        query, min(k, readable), query_modality=modality
    )
    return [(row, None, d) for row, d in zip(indices[0], distances[0])]


def moment_suffix(time):
    """``" @ 12.4 s"`` for a moment of a video; nothing for a still image."""
    return "" if time is None else f" @ {time:.1f} s"


def write_sheet(args, searcher, hits, title):
    from sklearn_clip._retrieval.contact_sheet import write_contact_sheet

    skipped = [(r["source"], r["message"]) for r in searcher.input_errors_]
    sheet = write_contact_sheet(
        args.output,
        hits,
        root=args.folder,
        title=f"Search: {title}",
        model=str(args.model),
        n_images=searcher.n_samples_fit_ - len(skipped),
        skipped=skipped,
    )
    print(f"wrote {len(hits)} hits to {display_path(sheet)}")
