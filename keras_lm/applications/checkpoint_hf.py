"""Reading Hugging Face transformers checkpoints (config + weights) as numpy.

A source is one of: a checkpoint directory (``config.json`` plus ``model.safetensors``,
sharded ``model.safetensors.index.json``, ``pytorch_model.bin`` or its index), an in-memory
transformers model (anything with ``.config`` and ``.state_dict()``), a state dict (name ->
array/tensor) together with ``config=`` (a dict or a transformers config object), or a hub name
(``"bert-base-uncased"``, ``"org/name"``: a string that is not an existing path), which is fetched
with ``huggingface_hub.snapshot_download`` (or read from its local cache) when that is possible.
Safetensors files are read with ``safetensors.numpy``: torch is imported only for ``.bin`` files
and in-memory torch models.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
_PYTORCH = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
_HUB_CONFIG_FILES = ("config.json",)
_HUB_SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json", "model-*.safetensors")
_HUB_PYTORCH_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin")


class CheckpointError(ValueError):
    """A checkpoint whose configuration, layout or tensors do not fit the model being built."""


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint that is neither a local folder nor downloadable from the Hugging Face Hub."""


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (bf16/fp16 are widened to float32)
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _config_dict(config) -> dict:
    if config is None:
        raise ValueError("A state dict needs `config=` (a dict or a transformers config) to describe the model.")
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"`config` must be a dict or a transformers config, got {type(config).__name__}.")


def _load_weight_file(path: str) -> dict:
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise ImportError(
                "Reading .safetensors needs the `safetensors` package (pip install safetensors)."
            ) from error
        try:
            return load_file(path)
        except (TypeError, ValueError):  # e.g. bfloat16, which numpy lacks: go through torch
            pass
        except Exception as error:  # safetensors' own error for a truncated or corrupt file
            raise CheckpointError(f"Cannot read '{path}': {error}.") from error
        from safetensors.torch import load_file as load_torch_file

        return {name: _to_numpy(value) for name, value in load_torch_file(path).items()}
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"Reading {os.path.basename(path)} needs torch; save the checkpoint as safetensors "
                          "or install torch.") from error
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: _to_numpy(value) for name, value in state.items()}


def _read_directory(directory: str) -> tuple[dict, dict]:
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"No config.json in '{directory}': not a transformers checkpoint directory.")
    with open(config_path, encoding="utf-8") as file:
        config = json.load(file)
    for name in _SAFETENSORS + _PYTORCH:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(".index.json"):
            with open(path, encoding="utf-8") as file:
                shards = sorted(set(json.load(file)["weight_map"].values()))
            state = {}
            for shard in shards:
                shard_path = os.path.join(directory, shard)
                if not os.path.isfile(shard_path):
                    raise FileNotFoundError(f"'{path}' lists the shard '{shard}', which is not in '{directory}'.")
                state.update(_load_weight_file(shard_path))
            return config, state
        return config, _load_weight_file(path)
    raise FileNotFoundError(
        f"No weights in '{directory}': expected one of {', '.join(_SAFETENSORS + _PYTORCH)}."
    )


def is_hub_name(text: str) -> bool:
    """Whether ``text`` looks like a Hugging Face Hub repository id (``name`` or ``org/name``)."""
    return bool(_HUB_NAME.match(text)) and ".." not in text and "--" not in text


def _offline_requested() -> bool:
    return any(os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def download_from_hub(repo_id: str, tokenizer_files: tuple[str, ...] = ()) -> str:
    """The local folder of ``repo_id``'s config, weights and ``tokenizer_files`` (hub download or cache).

    Raises ``CheckpointNotFoundError`` saying what to download by hand when the hub is unreachable,
    offline mode is on (``HF_HUB_OFFLINE=1``: only the local cache is used) or huggingface_hub is
    not installed.
    """
    files = ("config.json", "model.safetensors", *tokenizer_files)
    wanted = ", ".join(files[:-1]) + " and " + files[-1]

    def not_found(reason: str) -> CheckpointNotFoundError:
        return CheckpointNotFoundError(
            f"'{repo_id}' is not a local folder, and it could not be fetched from the Hugging Face Hub "
            f"({reason}). Download {wanted} of {repo_id} from https://huggingface.co/{repo_id} into a "
            "folder and pass that folder."
        )

    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise not_found("huggingface_hub is not installed") from None
    offline = _offline_requested()
    patterns = [*_HUB_CONFIG_FILES, *tokenizer_files]
    try:
        directory = snapshot_download(repo_id, allow_patterns=[*patterns, *_HUB_SAFETENSORS_FILES],
                                      local_files_only=offline)
        if not any(os.path.isfile(os.path.join(directory, name)) for name in _SAFETENSORS):
            directory = snapshot_download(repo_id, allow_patterns=[*patterns, *_HUB_PYTORCH_FILES],
                                          local_files_only=offline)
    except Exception as error:  # network, offline mode, unknown or gated repository
        reason = "offline mode is on (HF_HUB_OFFLINE=1) and it is not in the local cache" if offline else (
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}")
        raise not_found(reason) from error
    return directory


def read_hf_checkpoint(source, config=None, tokenizer_files: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """``(config dict, {weight name: float32/int numpy array})`` for a checkpoint source (see module doc).

    ``tokenizer_files`` are fetched along with a hub name (e.g. ``("vocab.txt",)`` for BERT).
    """
    if isinstance(source, (str, os.PathLike)):
        directory = os.fspath(source)
        if not os.path.exists(directory) and isinstance(source, str) and is_hub_name(directory):
            directory = download_from_hub(directory, tokenizer_files)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"'{directory}' is not a directory holding a transformers checkpoint.")
        return _read_directory(directory)
    if hasattr(source, "state_dict") and hasattr(source, "config"):
        state = {name: _to_numpy(value) for name, value in source.state_dict().items()}
        return _config_dict(config if config is not None else source.config), state
    if isinstance(source, dict):
        return _config_dict(config), {name: _to_numpy(value) for name, value in source.items()}
    raise TypeError(
        f"Cannot read a checkpoint from {type(source).__name__}: pass a directory, a transformers model or "
        "a state dict with `config=`."
    )


def strip_prefix(state: dict, prefixes: tuple[str, ...]) -> dict:
    """Drops a leading model prefix (``transformer.``, ``model.``) from the weight names."""
    result = {}
    for name, value in state.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        result[name] = value
    return result


class WeightPorter:
    """Assigns checkpoint arrays to variables, checking shapes and that every weight is used."""

    def __init__(self, state: dict, ignore=lambda name: False):
        self.state = state
        self.ignore = ignore
        self.used = set()

    def take(self, name: str) -> np.ndarray:
        if name not in self.state:
            raise CheckpointError(f"The checkpoint has no weight '{name}'.")
        self.used.add(name)
        return self.state[name]

    def has(self, name: str) -> bool:
        return name in self.state

    @staticmethod
    def assign(variable, value: np.ndarray, name: str) -> None:
        if tuple(variable.shape) != tuple(value.shape):
            raise CheckpointError(
                f"Cannot port '{name}': shape {tuple(value.shape)} does not fit {tuple(variable.shape)}.")
        variable.assign(value.astype(np.float32))

    def finish(self) -> None:
        unused = sorted(name for name in self.state if name not in self.used and not self.ignore(name))
        if unused:
            raise CheckpointError(f"Checkpoint weights not understood: {', '.join(unused[:8])}"
                             f"{' …' if len(unused) > 8 else ''}.")
