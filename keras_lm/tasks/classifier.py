"""Sequence classification: an encoder backbone plus a dropout + dense head on the pooled output."""
import keras

from keras_lm.tasks.saved_model import (
    ENCODER_DIR,
    PREPROCESS_DIR,
    SavedModelEncoder,
    SavedModelPreprocessor,
    read_manifest,
)
from keras_lm.tasks.task import Task

ENCODER_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def backbone_inputs(backbone) -> dict:
    """The backbone's own symbolic inputs, or fresh int32 inputs for a reloaded SavedModel layer."""
    if isinstance(backbone, keras.Model) and isinstance(getattr(backbone, "input", None), dict):
        return backbone.input
    return {name: keras.Input((None,), dtype="int32", name=name) for name in ENCODER_INPUTS}


def load_backbone_file(path: str):
    """Loads a `.keras` file holding a backbone or a model with a `.backbone` (e.g. a pretrainer)."""
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(f"No .keras file at '{path}'.")
    try:
        model = keras.saving.load_model(path)
    except Exception as error:
        raise ValueError(f"Could not load the Keras model file '{path}': {error}") from error
    return getattr(model, "backbone", model)


@keras.saving.register_keras_serializable(package="keras_lm")
class Classifier(Task):
    """Classifies a text (or a text pair) from an encoder's pooled output.

    Args:
        backbone: a keras_lm encoder (e.g. `keras_lm.applications.Bert`) or a `SavedModelEncoder`.
        num_classes: number of classes; the model outputs float32 logits [batch, num_classes].
        preprocessor: optional; when set, `fit`/`evaluate`/`predict` take raw strings.
        dropout: dropout on the pooled output before the dense head.

    Example:
        >>> encoder = keras_lm.applications.Bert("tiny", vocabulary_size=1000)  # doctest: +SKIP
        >>> classifier = Classifier(encoder, num_classes=2)  # doctest: +SKIP
        >>> classifier.compile(optimizer=keras_lm.training.adamw(2e-5))  # doctest: +SKIP
        >>> classifier.fit(train_ds, epochs=2)  # doctest: +SKIP
    """

    def __init__(self, backbone, num_classes: int, preprocessor=None, dropout: float = 0.1, **kwargs):
        if int(num_classes) < 2:
            raise ValueError(f"`num_classes` must be at least 2, got {num_classes}.")
        inputs = backbone_inputs(backbone)
        pooled = backbone(inputs)["pooled_output"]
        hidden = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
        logits = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype="float32",
            name="logits",
        )(hidden)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.num_classes = int(num_classes)
        self.dropout = dropout

    @classmethod
    def from_saved_model(cls, directory: str, num_classes: int, **kwargs) -> "Classifier":
        """Reloads an exported encoder (see `keras_lm.export.encoder`) trainably and adds a head.

        The encoder's variables train with any Keras optimizer (AdamW included) and its dropout is
        active during `fit`; the export's preprocess SavedModel becomes the preprocessor.
        """
        import os

        read_manifest(directory)
        encoder = SavedModelEncoder(os.path.join(directory, ENCODER_DIR), name="encoder")
        preprocessor = kwargs.pop("preprocessor", None) or SavedModelPreprocessor(
            os.path.join(directory, PREPROCESS_DIR), name="preprocessor"
        )
        return cls(encoder, num_classes, preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_keras_file(cls, path: str, num_classes: int, **kwargs) -> "Classifier":
        """Starts from a `.keras` file holding a backbone or a pretrainer (its `.backbone`)."""
        return cls(load_backbone_file(path), num_classes, **kwargs)

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Defaults: sparse categorical cross-entropy on logits and accuracy."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)
            if self.preprocessor is not None
            else None,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)
