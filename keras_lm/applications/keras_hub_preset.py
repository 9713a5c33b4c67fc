"""Local keras-hub preset folders (what ``save_to_preset`` writes: ``config.json``,
``model.weights.h5``, ``metadata.json``, tokenizer assets), loaded with keras-hub's own ``from_preset``.
"""
from __future__ import annotations

import json
import os

from keras_lm.applications.checkpoint_hf import CheckpointError


def keras_hub_preset_class(directory: str) -> str | None:
    """The class name in a keras-hub preset's ``config.json``, or None if it is not one."""
    config_path = os.path.join(directory, "config.json")
    if not (os.path.isfile(config_path) and os.path.isfile(os.path.join(directory, "model.weights.h5"))):
        return None
    with open(config_path, encoding="utf-8") as file:
        try:
            config = json.load(file)
        except json.JSONDecodeError:
            return None
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        return None
    return config["class_name"]


def load_keras_hub_preset(directory: str, expected_class: str, importer: str):
    """The keras-hub backbone of a local preset folder, checked to be ``expected_class``."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"'{directory}' is not a keras-hub preset folder.")
    found = keras_hub_preset_class(directory)
    if found is None:
        raise FileNotFoundError(f"'{directory}' is not a keras-hub preset folder: it needs config.json (with "
                                "'class_name') and model.weights.h5, as written by save_to_preset.")
    if found != expected_class:
        raise CheckpointError(f"'{directory}' holds a keras-hub {found} preset; {importer} reads {expected_class} "
                              "presets.")
    import keras_hub

    return getattr(keras_hub.models, expected_class).from_preset(directory)
