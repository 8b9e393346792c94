"""``sklearn-clip embed``: one embedding row per image or text.

``--output FILE`` (``.parquet``, ``.csv`` or ``.npy``) writes one file at the
end. ``--output FOLDER/`` (a trailing slash, or an existing folder) streams
parquet shards of ``--shard-size`` rows instead, resumably: see
:mod:`sklearn_clip._cli.shards`.
"""

import os
from pathlib import Path

from sklearn_clip._cli.common import (
    CommandError,
    add_input_options,
    add_model_options,
    add_output_options,
    add_video_options,
    check_output,
    frame_table,
    read_rows,
    video_option,
    write_frame,
)
from sklearn_clip._cli.options import EMBEDDER, estimator_option

OUTPUT_SUFFIXES = (".parquet", ".csv", ".npy")


def register(commands):
    parser = commands.add_parser(
        "embed",
        help="embed images or texts to a .parquet, .csv or .npy file, or to shards",
        description=(
            "Embed images (or texts) and write one row per input: to one file, "
            "or, with --output ending in '/', to parquet shards of --shard-size "
            "rows that a rerun of the same command resumes."
        ),
    )
    add_model_options(parser, EMBEDDER)
    add_input_options(parser, EMBEDDER)
    add_video_options(parser)
    parser.add_argument(
        "--per-frame",
        action="store_true",
        help="write one row per sampled video frame (input, frame, time, "
        "embedding) instead of one per video; a still image is one frame",
    )
    estimator_option(
        parser, EMBEDDER, "modality", "--modality", choices=["image", "text"]
    )
    add_output_options(
        parser,
        ".parquet, .csv or .npy file; or a folder (ending in '/') for shards",
        replaced="a single-file --output",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=10_000,
        help="rows per parquet shard in folder mode (default: %(default)s)",
    )
    estimator_option(
        parser,
        EMBEDDER,
        "n_jobs",
        "--n-jobs",
        "--workers",
        type=int,
    )
    parser.set_defaults(run=run)


def _is_folder(output):
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def _embedder(args, progress):
    from sklearn_clip import CLIPEmbeddingTransformer

    return CLIPEmbeddingTransformer(
        model=args.model,
        modality=args.modality,
        batch_size=args.batch_size,
        device=args.device,
        on_error=args.on_error,
        progress=progress,
        n_jobs=args.n_jobs,
        dtype=args.dtype,
        cache_dir=args.cache_dir,
        video=video_option(args),
    )


def run(args):
    from sklearn_clip._cli import shards as _shards

    folder = _is_folder(args.output)
    if not folder:
        # Not --images: a table written inside it replaces no image there.
        inputs = (args.file_list, args.table)
        check_output(
            args.output, OUTPUT_SUFFIXES, overwrite=args.overwrite, inputs=inputs
        )
    elif Path(args.output.rstrip("/" + os.sep) or "/").is_file():
        raise CommandError(f"--output {args.output!r} names a file, not a folder")
    else:
        inputs = (args.images, args.file_list, args.table)
        _shards.check_output_folder(args.output, inputs=inputs)
    if folder and args.per_frame:
        raise CommandError("--per-frame writes one file: give --output a file name")
    rows = read_rows(args)
    if folder:
        return _run_shards(args, rows)
    import pandas as pd

    embedder = _embedder(args, progress=True).set_output(transform="pandas")
    if args.per_frame:
        frames = embedder.fit(rows).transform_frames(rows)
        columns = list(embedder.get_feature_names_out())
        table = pd.concat([frame_table(frames, rows), frames[columns]], axis=1)
        return write_frame(table, args.output)
    embeddings = embedder.fit_transform(rows)
    frame = pd.concat(
        [pd.DataFrame({"input": rows}), embeddings.reset_index(drop=True)], axis=1
    )
    write_frame(frame, args.output)


def _run_shards(args, rows):
    from tqdm.auto import tqdm

    from sklearn_clip._cli import shards as _shards

    if args.shard_size < 1:
        raise CommandError(f"--shard-size must be at least 1; got {args.shard_size}")
    output = Path(args.output)
    # Loaded first: the shards must be of these weights, not of whatever
    # was at the model's path when they were written.
    embedder = _embedder(args, progress=False).fit(rows[:1])
    _shards.check_manifest(
        output,
        {
            "n_rows": len(rows),
            "rows_sha256": _shards.rows_digest(rows),
            "shard_size": args.shard_size,
            "model": str(args.model),
            "model_fingerprint": embedder.model_fingerprint_,
            "modality": args.modality,
            # float32 and bfloat16 rows never mix in one folder.
            "dtype": embedder.dtype_,
        },
    )
    n_shards = -(-len(rows) // args.shard_size)
    done = [n for n in range(n_shards) if _shards.shard_path(output, n).exists()]
    done_rows = sum(min(args.shard_size, len(rows) - n * args.shard_size) for n in done)
    if done:
        print(f"resuming: {len(done)} of {n_shards} shards already complete")
    # Chunks of a few batches keep the bar moving within a shard.
    chunk_size = min(args.shard_size, 8 * args.batch_size)
    bar = tqdm(total=len(rows), initial=done_rows, unit="row", desc="embedding")
    try:
        with bar:
            embedded, failed, skipped = _shards.embed_to_shards(
                embedder,
                rows,
                output,
                shard_size=args.shard_size,
                chunk_size=chunk_size,
                bar=bar,
            )
    except KeyboardInterrupt:
        complete = len(list(output.glob("shard-*.parquet")))
        print(
            f"interrupted: {complete} of {n_shards} shards are complete in "
            f"{str(output)!r}; run the same command again to resume"
        )
        raise SystemExit(130) from None
    print(
        f"embedded {embedded} rows ({failed} failed) into "
        f"{n_shards - skipped} new shards; {skipped} complete shards skipped; "
        f"{n_shards} shards in {str(output)!r}"
    )
