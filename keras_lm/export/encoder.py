"""TF-Hub-style encoder export: an encoder SavedModel plus a preprocess SavedModel."""
import json
import os

import keras
import tensorflow as tf

from keras_lm.export.files import atomic_directory
from keras_lm.tasks.saved_model import (
    ENCODER_DIR,
    ENCODER_FORMAT,
    HUB_INPUT_NAMES,
    MANIFEST_FILE,
    PREPROCESS_DIR,
)

FORMAT_VERSION = 1


def _hub_input_signature():
    return {
        hub_name: tf.TensorSpec([None, None], tf.int32, name=hub_name)
        for hub_name in HUB_INPUT_NAMES.values()
    }


def _with_layer_outputs(backbone) -> keras.Model:
    """The backbone as a model that also returns every transformer layer's output."""
    layer_outputs = [
        backbone.get_layer(f"transformer_layer_{i}").output for i in range(backbone.num_layers)
    ]
    outputs = dict(backbone.output)
    outputs["encoder_outputs"] = layer_outputs
    return keras.Model(backbone.input, outputs, name=f"{backbone.name}_with_layer_outputs")


def _encoder_function(model: keras.Model, training: bool):
    mask_dtype = model.input["padding_mask"].dtype

    def run(inputs):
        features = {
            name: inputs[hub_name] for name, hub_name in HUB_INPUT_NAMES.items()
        }
        features["padding_mask"] = tf.cast(features["padding_mask"], mask_dtype)
        outputs = model(features, training=training)
        return {
            "sequence_output": tf.cast(outputs["sequence_output"], tf.float32),
            "pooled_output": tf.cast(outputs["pooled_output"], tf.float32),
            # One tensor [num_layers, batch, length, hidden]: encoder_outputs[i] is layer i.
            "encoder_outputs": tf.stack(
                [tf.cast(x, tf.float32) for x in outputs["encoder_outputs"]], axis=0
            ),
        }

    return run


def write_encoder(backbone, directory: str) -> None:
    """Writes the encoder SavedModel: `serve` (also `serving_default`) and `serve_training`."""
    model = _with_layer_outputs(backbone)
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [_hub_input_signature()]
    archive.add_endpoint("serve", _encoder_function(model, training=False), input_signature=signature)
    archive.add_endpoint(
        "serve_training", _encoder_function(model, training=True), input_signature=signature
    )
    archive.write_out(directory, verbose=False)


def backbone_config(backbone) -> dict | None:
    """The backbone's Keras serialization (class and arguments, no weights), or None if it has none."""
    try:
        config = keras.saving.serialize_keras_object(backbone)
        config = {key: config[key] for key in ("module", "class_name", "registered_name", "config")}
        json.dumps(config)
    except Exception:  # a backbone without a JSON-serializable get_config: no rebuild from this export
        return None
    return config


class _Preprocess(tf.Module):
    """strings -> {input_word_ids, input_mask, input_type_ids}, one segment or a pair."""

    def __init__(self, preprocessor):
        super().__init__(name="preprocess")
        self.preprocessor = preprocessor
        self.sequence_length = tf.Variable(int(preprocessor.sequence_length), trainable=False)
        text = tf.TensorSpec([None], tf.string, name="text")
        self.serve = tf.function(self._one, input_signature=[text])
        self.serve_pair = tf.function(
            self._pair,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="first"),
                tf.TensorSpec([None], tf.string, name="second"),
            ],
        )

    def _hub_outputs(self, features):
        return {
            hub_name: tf.cast(features[name], tf.int32) for name, hub_name in HUB_INPUT_NAMES.items()
        }

    def _one(self, text):
        return self._hub_outputs(self.preprocessor(text))

    def _pair(self, first, second):
        return self._hub_outputs(self.preprocessor((first, second)))


def write_preprocess(preprocessor, directory: str) -> None:
    """Writes the preprocess SavedModel (needs `import tensorflow_text` to load)."""
    module = _Preprocess(preprocessor)
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})


def encoder(backbone, preprocessor, directory: str, overwrite: bool = False, protected=()) -> str:
    """Exports a TF-Hub-style encoder/preprocessor pair that `Classifier.from_saved_model` reloads.

    Layout: `DIR/encoder` (inputs `input_word_ids`, `input_mask`, `input_type_ids` int32
    [batch, length] -> `pooled_output`, `sequence_output`, `encoder_outputs`; endpoints `serve`
    and `serve_training`, the latter with dropout on), `DIR/preprocess` (tf.string [batch] ->
    the three inputs; `serve` for one segment, `serve_pair` for two) and `DIR/keras_lm.json`.
    `encoder_outputs` is one tensor [num_layers, batch, length, hidden]: `encoder_outputs[i]` is
    the output of layer i, as with TF-Hub's list.

    `overwrite=True` replaces only a previous encoder export (marked by its `.keras_lm_export`
    file); any other existing folder, `""`, `"."`, the home folder, a folder holding the current
    working directory or a `protected` path (e.g. the source `.keras` file) is refused with
    FileExistsError before any work.

    Example:
        >>> keras_lm.export.encoder(bert, preprocessor, "hub/bert")  # doctest: +SKIP
        >>> clf = keras_lm.tasks.Classifier.from_saved_model("hub/bert", 2)  # doctest: +SKIP
    """
    missing = [name for name in ("num_layers", "hidden_dim") if not hasattr(backbone, name)]
    if missing or not isinstance(getattr(backbone, "input", None), dict):
        raise TypeError(
            "keras_lm.export.encoder needs a keras_lm encoder backbone (e.g. "
            f"keras_lm.applications.Bert); got {type(backbone).__name__}."
        )
    print(f"[export] writing encoder SavedModel pair to {directory}")
    with atomic_directory(directory, overwrite, kind="encoder", protected=protected) as staging:
        write_encoder(backbone, os.path.join(staging, ENCODER_DIR))
        write_preprocess(preprocessor, os.path.join(staging, PREPROCESS_DIR))
        manifest = {
            "format": ENCODER_FORMAT,
            "version": FORMAT_VERSION,
            "hidden_dim": int(backbone.hidden_dim),
            "num_layers": int(backbone.num_layers),
            "sequence_length": int(preprocessor.sequence_length),
            # Lets `Classifier.from_saved_model(..., rebuild=True)` rebuild keras_lm layers.
            "backbone": backbone_config(backbone),
        }
        with open(os.path.join(staging, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2)
    return directory
