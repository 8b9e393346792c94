"""``sklearn-clip embed``: one embedding row per image or text."""

from sklearn_clip._cli.common import (
    add_input_options,
    add_model_options,
    add_output_options,
    check_output,
    read_rows,
    write_frame,
)

OUTPUT_SUFFIXES = (".parquet", ".csv", ".npy")


def register(commands):
    parser = commands.add_parser(
        "embed",
        help="embed images or texts to a .parquet, .csv or .npy file",
        description="Embed images (or texts) and write one row per input.",
    )
    add_model_options(parser)
    add_input_options(parser)
    parser.add_argument("--modality", choices=["image", "text"], default="image")
    add_output_options(parser, OUTPUT_SUFFIXES)
    parser.set_defaults(run=run)


def run(args):
    import pandas as pd

    from sklearn_clip import CLIPEmbeddingTransformer

    check_output(args.output, OUTPUT_SUFFIXES, overwrite=args.overwrite)
    rows = read_rows(args)
    embedder = CLIPEmbeddingTransformer(
        model=args.model,
        modality=args.modality,
        batch_size=args.batch_size,
        device=args.device,
        on_error=args.on_error,
        progress=True,
    ).set_output(transform="pandas")
    embeddings = embedder.fit_transform(rows)
    frame = pd.concat(
        [pd.DataFrame({"input": rows}), embeddings.reset_index(drop=True)], axis=1
    )
    write_frame(frame, args.output)
