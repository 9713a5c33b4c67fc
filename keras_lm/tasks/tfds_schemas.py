"""TFDS datasets as task inputs: GLUE for ``Classifier``, SuperGLUE COPA for ``MultipleChoice``.

A schema reads a dataset's ``tfds.core.DatasetInfo`` (its text features, label names) and maps its
examples to what a task's ``fit`` takes::

    glue/cola  {"sentence", "label"}                 -> (sentence, label)
    glue/mrpc  {"sentence1", "sentence2", "label"}   -> ((sentence1, sentence2), label)
    super_glue/copa {"premise", "question", "choice1", "choice2", "label"}
               -> {"context": premise, "question": "What was the cause?" | "What happened as a result?",
                   "choices": [choice1, choice2], "label"}   (for MultipleChoice.dataset)

Example:
    >>> import tensorflow_datasets as tfds
    >>> train, info = tfds.load("glue/cola", split="train", with_info=True)  # doctest: +SKIP
    >>> schema = glue_schema(info)  # doctest: +SKIP
    >>> classifier = Classifier(encoder, schema.num_classes, preprocessor=preprocessor)  # doctest: +SKIP
    >>> classifier.compile(optimizer="adam", metrics=schema.metrics())  # doctest: +SKIP
    >>> classifier.fit(schema.inputs(train), epochs=3)  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_lm.evaluation.classification import ClassificationAccuracy, F1Score, MatthewsCorrelation

#: GLUE configs with class labels -> their text features, in the order the task pairs them.
GLUE_TEXT_FEATURES = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "mnli_matched": ("premise", "hypothesis"),
    "mnli_mismatched": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
    "ax": ("premise", "hypothesis"),
}
#: The metrics GLUE reports per task (accuracy everywhere else).
GLUE_METRICS = {"cola": ("matthews_correlation",), "mrpc": ("f1", "accuracy"), "qqp": ("f1", "accuracy")}
#: COPA's question words -> the question joined to the premise, as phrased in the literature.
COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _name_and_config(info) -> tuple[str, str]:
    info = getattr(info, "info", info)  # a builder
    return info.name, info.config_name or ""


@dataclasses.dataclass(frozen=True)
class ClassificationSchema:
    """How a TFDS text-classification dataset feeds a ``Classifier``.

    Attributes:
        name: ``"glue/cola"``, ...
        text_features: one feature (a single text) or two (a text pair).
        label_names: class names by id, from the dataset's info.
        metric_names: what the benchmark reports (``"accuracy"``, ``"f1"``, ``"matthews_correlation"``).
    """

    name: str
    text_features: tuple
    label_names: tuple
    metric_names: tuple = ("accuracy",)
    label_feature: str = "label"

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def metrics(self) -> list:
        """Keras metrics for ``compile(metrics=...)``, the benchmark's own first (MCC for CoLA)."""
        made = {
            "accuracy": lambda: ClassificationAccuracy(self.num_classes),
            "f1": lambda: F1Score(self.num_classes, average="binary" if self.num_classes == 2 else "macro",
                                  name="f1"),
            "matthews_correlation": lambda: MatthewsCorrelation(self.num_classes),
        }
        return [made[name]() for name in self.metric_names]

    def example_inputs(self, example: dict):
        """One example -> ``(text, label)`` or ``((first, second), label)``."""
        texts = tuple(example[name] for name in self.text_features)
        return (texts[0] if len(texts) == 1 else texts), example[self.label_feature]

    def inputs(self, dataset: tf.data.Dataset, drop_unlabelled: bool = True) -> tf.data.Dataset:
        """``dataset``'s examples as ``(text(s), label)`` for ``Classifier.fit`` (unbatched: the task batches).

        GLUE's test splits have no labels (``-1``): those examples are dropped unless
        ``drop_unlabelled=False``.
        """
        if drop_unlabelled:
            dataset = dataset.filter(lambda example: example[self.label_feature] >= 0)
        return dataset.map(self.example_inputs, num_parallel_calls=tf.data.AUTOTUNE)


def glue_schema(info) -> ClassificationSchema:
    """The ``ClassificationSchema`` of a GLUE config, read from its ``DatasetInfo`` (or builder).

    Raises:
        ValueError: not a GLUE config with class labels (STS-B is regression), or an info whose
            features lack the expected texts or a ``ClassLabel`` label.
    """
    name, config = _name_and_config(info)
    info = getattr(info, "info", info)
    if name != "glue" or config not in GLUE_TEXT_FEATURES:
        hint = " (STS-B is a regression task: its label is a float score)" if config == "stsb" else ""
        raise ValueError(f"glue_schema reads the GLUE classification configs glue/{{{', '.join(GLUE_TEXT_FEATURES)}}}; "
                         f"got {name}/{config}{hint}.")
    texts = GLUE_TEXT_FEATURES[config]
    missing = [feature for feature in (*texts, "label") if feature not in info.features]
    if missing:
        raise ValueError(f"{name}/{config}'s info has no feature {', '.join(missing)}; its features are "
                         f"{', '.join(info.features)}.")
    label_names = tuple(getattr(info.features["label"], "names", None) or ())
    if len(label_names) < 2:
        raise ValueError(f"{name}/{config}'s 'label' is not a ClassLabel with names: {info.features['label']}.")
    return ClassificationSchema(f"{name}/{config}", texts, label_names, GLUE_METRICS.get(config, ("accuracy",)))


@dataclasses.dataclass(frozen=True)
class MultipleChoiceSchema:
    """How SuperGLUE COPA feeds a ``MultipleChoice`` model (``num_choices`` 2)."""

    name: str
    choice_features: tuple
    num_choices: int

    def example_inputs(self, example: dict) -> dict:
        """One COPA example -> ``{"context", "question", "choices", "label"}`` for ``MultipleChoice.dataset``.

        A question word other than ``cause``/``effect`` fails with an error naming it.
        """
        question = example["question"]
        is_cause = tf.equal(question, "cause")
        known = tf.logical_or(is_cause, tf.equal(question, "effect"))
        check = tf.debugging.Assert(known, ["COPA question must be 'cause' or 'effect'; got", question])
        with tf.control_dependencies([check]):
            phrased = tf.where(is_cause, COPA_QUESTIONS["cause"], COPA_QUESTIONS["effect"])
        return {"context": example["premise"], "question": phrased,
                "choices": tf.stack([example[name] for name in self.choice_features]),
                "label": example["label"]}

    def inputs(self, dataset: tf.data.Dataset, drop_unlabelled: bool = True) -> tf.data.Dataset:
        """``dataset``'s examples as dicts for ``MultipleChoice.dataset`` (its test split is unlabelled: -1)."""
        if drop_unlabelled:
            dataset = dataset.filter(lambda example: example["label"] >= 0)
        return dataset.map(self.example_inputs, num_parallel_calls=tf.data.AUTOTUNE)


def copa_schema(info) -> MultipleChoiceSchema:
    """The ``MultipleChoiceSchema`` of ``super_glue/copa``, checked against its ``DatasetInfo``."""
    name, config = _name_and_config(info)
    info = getattr(info, "info", info)
    if (name, config) != ("super_glue", "copa"):
        raise ValueError(f"copa_schema reads super_glue/copa; got {name}/{config}.")
    needed = ("premise", "question", "choice1", "choice2", "label")
    missing = [feature for feature in needed if feature not in info.features]
    if missing:
        raise ValueError(f"super_glue/copa's info has no feature {', '.join(missing)}.")
    num_choices = int(getattr(info.features["label"], "num_classes", 2))
    return MultipleChoiceSchema("super_glue/copa", tuple(f"choice{i + 1}" for i in range(num_choices)), num_choices)
