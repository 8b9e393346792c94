"""``sklearn-clip duplicates``: groups of near-identical images in a folder."""

from sklearn_clip._cli.common import add_model_options
from sklearn_clip._cli.options import NEIGHBORS, estimator_option
from sklearn_clip._cli.search import add_collection_options, fit_folder
from sklearn_clip._files import display_path


def register(commands):
    parser = commands.add_parser(
        "duplicates",
        help="list groups of near-identical images in a folder",
        description=(
            "Embed the images of a folder and print the groups of images whose "
            "embeddings have cosine similarity >= --threshold (joined in chains). "
            "Unreadable files are listed and left out."
        ),
    )
    add_model_options(parser, NEIGHBORS)
    add_collection_options(parser, "--images")
    estimator_option(
        parser,
        f"{NEIGHBORS}.find_duplicates",
        "threshold",
        "--threshold",
        type=float,
        note="See the docs' search and duplicates page to choose it.",
    )
    parser.set_defaults(run=run)


def run(args):
    searcher, paths = fit_folder(args)
    groups = searcher.find_duplicates(threshold=args.threshold)
    for number, group in enumerate(groups, 1):
        print(f"group {number} ({len(group)} images)")
        for row in group:
            print(f"  {display_path(paths[row])}")
    print(f"{len(groups)} groups, {sum(map(len, groups))} images")
