"""Base class of keras_lm tasks: a functional model plus an optional preprocessor.

When a task has a preprocessor, `fit`, `evaluate` and `predict` accept raw text (a tf.data.Dataset
of `(text, label)` or `(text, label, sample_weight)`, or arrays/lists of strings) and map the
preprocessor over the data inside the tf.data pipeline, batched, before the model sees it.
"""
import keras
import tensorflow as tf

from keras_lm.training.saving import RecompiledOnLoad

DEFAULT_BATCH_SIZE = 32


def is_empty(x) -> bool:
    """Whether `x` is a list/tuple/array/tensor with no examples, or a dataset known to be empty."""
    if isinstance(x, tf.data.Dataset):
        return int(x.cardinality()) == 0
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(_is_text(t) or is_empty(t) for t in x):
        x = x[0]  # a sentence pair (first, second)
    if isinstance(x, dict):
        return any(is_empty(value) for value in x.values())
    if isinstance(x, (list, tuple)):
        return len(x) == 0
    shape = getattr(x, "shape", None)
    return shape is not None and len(shape) > 0 and shape[0] == 0


def check_not_empty(x, method: str) -> None:
    """One clear ValueError instead of Keras' warning or a deep error when `x` has no examples."""
    if is_empty(x):
        raise ValueError(f"{method} got no examples: the data is empty; pass at least one example.")


def tokenizer_vocabulary_size(tokenizer) -> int | None:
    """``tokenizer.vocabulary_size()``, or None when there is no tokenizer or it cannot tell."""
    size = getattr(tokenizer, "vocabulary_size", None) if tokenizer is not None else None
    try:
        return int(size()) if callable(size) else None
    except (TypeError, ValueError):
        return None


def check_tokenizer_fits(backbone, tokenizer) -> None:
    """A ValueError when the tokenizer can produce ids the backbone has no embedding for.

    Sizes that cannot be read (no tokenizer, a reloaded SavedModel encoder) are not compared.
    """
    size = tokenizer_vocabulary_size(tokenizer)
    vocabulary = getattr(backbone, "vocabulary_size", None)
    if size is not None and isinstance(vocabulary, int) and size > vocabulary:
        raise ValueError(
            f"The tokenizer has {size} tokens but the backbone embeds only {vocabulary}: they do not belong "
            f"together. Build the backbone with vocabulary_size={size} (or pass the tokenizer it was trained with)."
        )


def _is_text(x) -> bool:
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], (str, bytes)):
        return True
    if isinstance(x, (str, bytes)):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and (dtype == tf.string or getattr(dtype, "kind", "") in "OSU")


class Task(RecompiledOnLoad, keras.Model):
    """A keras.Model whose data can be raw text when a `preprocessor` is attached."""

    def _base_config(self) -> dict:
        """The config every task shares: name, trainable, its backbone and preprocessor."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)
            if self.preprocessor is not None
            else None,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)

    def _preprocess_element(self, *element):
        x, rest = element[0], element[1:]
        if isinstance(x, tuple) and len(x) == 2 and all(_is_text(t) for t in x):
            features = trim_padding(self.preprocessor(x))  # a sentence pair
        elif _is_text(x):
            features = trim_padding(self.preprocessor(x))
        else:
            features = x  # already preprocessed
        return (features, *rest) if rest else features

    def preprocess_data(self, x, y=None, sample_weight=None, batch_size=None, shuffle=False):
        """Returns a batched, preprocessed, prefetching tf.data.Dataset (or `x` unchanged)."""
        if self.preprocessor is None or x is None:
            return x
        if isinstance(x, tf.data.Dataset):
            dataset = x
            if _text_rank(dataset) == 0:
                dataset = dataset.batch(batch_size or DEFAULT_BATCH_SIZE)
        else:
            parts = tuple(p for p in (x, y, sample_weight) if p is not None)
            if isinstance(x, (str, bytes)):
                raise ValueError("Pass a list or array of strings, not a single string.")
            dataset = tf.data.Dataset.from_tensor_slices(parts)  # a 1-tuple keeps a text pair whole
            if shuffle:
                dataset = dataset.shuffle(len(x), seed=0)
            dataset = dataset.batch(batch_size or DEFAULT_BATCH_SIZE)
        return dataset.map(self._preprocess_element, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE
        )

    def _uses_preprocessing(self, x) -> bool:
        if self.preprocessor is None:
            return False
        if isinstance(x, tf.data.Dataset):
            return _text_rank(x) is not None
        return _is_text(x) or (isinstance(x, tuple) and len(x) == 2 and all(map(_is_text, x)))

    def fit(self, x=None, y=None, batch_size=None, validation_data=None, **kwargs):
        check_not_empty(x, "fit")
        try:
            history = self._fit(x, y, batch_size, validation_data, **kwargs)
        except BaseException:
            if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
                # Keras keeps the train function of a failed first call, whose retrace cannot create
                # the optimizer's variables: drop it so that the next fit on good data trains normally.
                self.train_function = None
            raise
        epochs, initial_epoch = kwargs.get("epochs", 1), kwargs.get("initial_epoch", 0)
        if epochs > initial_epoch and not history.history:
            raise ValueError("fit ran no training step: the data yielded no batch (an empty dataset?).")
        return history

    def _fit(self, x, y, batch_size, validation_data, **kwargs):
        if not self._uses_preprocessing(x):
            return super().fit(x, y, batch_size=batch_size, validation_data=validation_data, **kwargs)
        sample_weight = kwargs.pop("sample_weight", None)
        shuffle = kwargs.pop("shuffle", True)
        data = self.preprocess_data(x, y, sample_weight, batch_size, shuffle=shuffle)
        if validation_data is not None:
            if isinstance(validation_data, tf.data.Dataset):
                validation_data = self.preprocess_data(validation_data, batch_size=batch_size)
            else:
                validation_data = self.preprocess_data(*validation_data, batch_size=batch_size)
        return super().fit(data, validation_data=validation_data, shuffle=False, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        check_not_empty(x, "evaluate")
        results = self._evaluate(x, y, batch_size, **kwargs)
        if results is None or (isinstance(results, (list, dict)) and not results):
            raise ValueError("evaluate ran no step: the data yielded no batch (an empty dataset?).")
        return results

    def _evaluate(self, x, y, batch_size, **kwargs):
        if not self._uses_preprocessing(x):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        sample_weight = kwargs.pop("sample_weight", None)
        return super().evaluate(self.preprocess_data(x, y, sample_weight, batch_size), **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        if not self._uses_preprocessing(x):
            return super().predict(x, batch_size=batch_size, **kwargs)
        return super().predict(self.preprocess_data(x, batch_size=batch_size), **kwargs)


#: Trimmed batches keep a width that is a multiple of this (bounded number of XLA shapes).
TRIM_MULTIPLE = 16


def trim_padding(features: dict, multiple: int = TRIM_MULTIPLE) -> dict:
    """Drops the trailing columns that are padding in every row of a batch.

    Encoders mask padded positions, so outputs at real tokens do not change; short texts packed
    to a long ``sequence_length`` then cost only as much as the longest text of their batch. The
    kept width is rounded up to a multiple of ``multiple`` so that a compiled (XLA) model sees a
    handful of shapes instead of one per batch.
    """
    mask = features.get("padding_mask") if isinstance(features, dict) else None
    if mask is None or mask.shape.rank != 2:
        return features
    width = tf.shape(mask)[1]
    length = tf.reduce_max(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1))
    length = tf.maximum(length, 1)
    length = tf.minimum((length + multiple - 1) // multiple * multiple, width)
    return {
        name: value[:, :length] if value.shape.rank == 2 else value
        for name, value in features.items()
    }


def _text_rank(dataset: tf.data.Dataset):
    """Rank of the text features of a dataset's elements, or None when they are not text."""
    spec = dataset.element_spec
    features = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(features, tuple):  # a sentence pair
        features = features[0]
    if isinstance(features, tf.TensorSpec) and features.dtype == tf.string:
        return features.shape.rank
    return None
