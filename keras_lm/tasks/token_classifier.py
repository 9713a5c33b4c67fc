"""Token classification (named-entity recognition, chunking, POS tagging): one tag per word.

An encoder backbone plus a dropout + dense head on ``sequence_output`` gives tag logits for every
token; words are aligned to tokens by ``keras_lm.tokenizers.word_alignment.WordAligner`` (a word's
tag is read at its first sub-word piece; the other pieces carry no loss). Data in the TFDS
``conll2003`` layout (``tokens``: words, ``ner``/``pos``/``chunks``: tag ids) trains with plain
``fit`` on ``TokenClassifier.dataset(...)``; tag names come from the dataset's ``DatasetInfo``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_lm.evaluation.tagging import EntityScores, entity_scores
from keras_lm.tasks.classifier import (
    ENCODER_INPUTS,
    LABEL_ERROR,
    backbone_inputs,
    load_backbone_file,
)
from keras_lm.tasks.saved_model import (
    ENCODER_DIR,
    PREPROCESS_DIR,
    SavedModelEncoder,
    SavedModelPreprocessor,
    read_manifest,
)
from keras_lm.tasks.task import Task, check_tokenizer_fits, trim_padding
from keras_lm.tokenizers.word_alignment import NO_WORD, WordAligner, split_words, word_labels

logger = logging.getLogger(__name__)

#: The keys of a CoNLL-2003 example in TFDS (``tfds.load("conll2003")``).
CONLL_WORDS, CONLL_TAGS = "tokens", "ner"


@contextlib.contextmanager
def _data_errors_as_value_errors():
    """Turns a failed in-graph check of tagging data (tag ids, tags per word) into a one-line ValueError."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = re.search(r"assertion failed: (.*)", error.message)
        text = found.group(1) if found else ""
        if LABEL_ERROR not in text and "WordAligner:" not in text:
            raise
        parts = [part.strip() for part in re.findall(r"\[([^\]]*)\]", text)]
        message = " ".join(parts).replace(LABEL_ERROR, "").strip()
        raise ValueError(message + ".") from None


def tag_names_from_info(info, tags_key: str = CONLL_TAGS) -> list[str]:
    """Tag names of a TFDS dataset's tag feature (``Sequence(ClassLabel(names=...))``).

    Example:
        >>> ds, info = tfds.load("conll2003", split="train", with_info=True)  # doctest: +SKIP
        >>> tag_names_from_info(info)[:3]  # doctest: +SKIP
        ['O', 'B-PER', 'I-PER']
    """
    features = getattr(info, "features", info)
    if tags_key not in features:
        raise ValueError(f"The dataset has no feature {tags_key!r}; its features are {sorted(features.keys())}.")
    feature = features[tags_key]
    label = getattr(feature, "feature", feature)  # Sequence(ClassLabel) -> ClassLabel
    names = getattr(label, "names", None)
    if not names:
        raise ValueError(f"Feature {tags_key!r} is not a sequence of class labels with names: {feature!r}.")
    return list(names)


def _tag_setup(num_classes, tag_names) -> tuple[int, list[str] | None]:
    if num_classes is not None and not isinstance(num_classes, (int, np.integer)):
        names = [str(n) for n in num_classes]
        if tag_names is not None and list(tag_names) != names:
            raise ValueError("Pass the tag names once: as `num_classes` or as `tag_names`.")
        tag_names, num_classes = names, len(names)
    if num_classes is None:
        if tag_names is None:
            raise ValueError("TokenClassifier needs `num_classes` (an int) or the tag names (a list of strings).")
        num_classes = len(tag_names)
    num_classes = int(num_classes)
    if tag_names is not None:
        tag_names = [str(n) for n in tag_names]
        if len(tag_names) != num_classes:
            raise ValueError(f"{len(tag_names)} tag names for num_classes={num_classes}.")
        if len(set(tag_names)) != len(tag_names):
            raise ValueError(f"Tag names must be distinct; got {tag_names}.")
    if num_classes < 2:
        raise ValueError(f"A tagger needs at least 2 tags; got {num_classes}.")
    return num_classes, tag_names


@keras.saving.register_keras_serializable(package="keras_lm")
class TokenClassifier(Task):
    """Tags every word of a sentence from an encoder's per-token outputs.

    The model maps ``{"token_ids", "segment_ids", "padding_mask"}`` to float32 tag logits
    ``[batch, length, num_classes]``. With a preprocessor, ``dataset`` turns examples of
    pre-split words and per-word tag ids (the TFDS conll2003 layout) into training batches,
    ``predict_tags`` tags words or raw texts, and ``evaluate_entities`` scores entities.

    Args:
        backbone: a keras_lm encoder (e.g. ``keras_lm.applications.Bert``) or a ``SavedModelEncoder``.
        num_classes: the number of tags, or the tag names (``["O", "B-PER", "I-PER", ...]``).
        preprocessor: a ``BertPreprocessor``, a ``SavedModelPreprocessor`` or a ``WordAligner``.
        dropout: dropout on ``sequence_output`` before the dense head.
        tag_names: the tag names, when ``num_classes`` is an int.
        word_prefix: prepended to each word before tokenizing (``" "`` for byte-level BPE).

    Example:
        >>> encoder = keras_lm.applications.Bert("tiny", vocabulary_size=1000)  # doctest: +SKIP
        >>> preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=64)  # doctest: +SKIP
        >>> tagger = TokenClassifier(encoder, ["O", "B-PER", "I-PER"], preprocessor)  # doctest: +SKIP
        >>> tagger.compile(optimizer=keras_lm.training.adamw(5e-5))  # doctest: +SKIP
        >>> tagger.fit(tagger.dataset(conll_train, batch_size=32), epochs=3)  # doctest: +SKIP
        >>> tagger.predict_tags(["Ada Lovelace lived in London ."])  # doctest: +SKIP
        [['B-PER', 'I-PER', 'O', 'O', 'B-LOC', 'O']]
    """

    def __init__(self, backbone, num_classes, preprocessor=None, dropout: float = 0.1,
                 tag_names: Sequence[str] | None = None, word_prefix: str = "", **kwargs):
        num_classes, tag_names = _tag_setup(num_classes, tag_names)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        check_tokenizer_fits(backbone, getattr(preprocessor, "tokenizer", None))
        inputs = backbone_inputs(backbone)
        sequence = backbone(inputs)["sequence_output"]
        hidden = keras.layers.Dropout(dropout, name="head_dropout")(sequence)
        logits = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype="float32",
            name="tag_logits",
        )(hidden)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.num_classes = num_classes
        self.tag_names = tag_names
        self.dropout = dropout
        self.word_prefix = str(word_prefix)
        if isinstance(preprocessor, WordAligner) or preprocessor is None:
            self.aligner = preprocessor
        else:
            self.aligner = WordAligner(preprocessor, word_prefix=self.word_prefix, name="word_aligner")

    # -- starting points -----------------------------------------------------------------------

    @classmethod
    def from_saved_model(cls, directory: str, num_classes, **kwargs) -> "TokenClassifier":
        """Reloads an exported encoder (see ``keras_lm.export.encoder``) trainably and adds a tag head.

        The export's preprocess SavedModel becomes the preprocessor: each word is packed on its
        own to find its pieces.
        """
        read_manifest(directory)
        encoder = SavedModelEncoder(os.path.join(directory, ENCODER_DIR), name="encoder")
        preprocessor = kwargs.pop("preprocessor", None) or SavedModelPreprocessor(
            os.path.join(directory, PREPROCESS_DIR), name="preprocessor"
        )
        return cls(encoder, num_classes, preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_keras_file(cls, path: str, num_classes, **kwargs) -> "TokenClassifier":
        """Starts from a ``.keras`` file holding a backbone or a pretrainer (its ``.backbone``)."""
        return cls(load_backbone_file(path), num_classes, **kwargs)

    @classmethod
    def from_hf(cls, source, num_classes=None, preprocessor="auto", sequence_length: int | None = None,
                config=None, dtype=None, **kwargs) -> "TokenClassifier":
        """A tagger on a Hugging Face encoder checkpoint; its token-classification head too when it has one.

        The families are the entries of ``keras_lm.tasks.hf_heads.HF_ENCODER_FAMILIES`` (``model_type``:
        ``bert``, ``roberta``, ``electra``), which also give the preprocessor and the word prefix
        (``" "`` for RoBERTa's byte-level BPE, as transformers tokenizes pre-split words). A
        ``*ForTokenClassification`` checkpoint also gives the head (``classifier.weight``/``bias``),
        the tag names (``id2label`` of config.json) and the dropout (``classifier_dropout``, else
        ``hidden_dropout_prob``); any other checkpoint gets a fresh head of ``num_classes`` tags (the
        labels of another task's head, e.g. a ``*ForSequenceClassification``, are not taken as tags).

        Args:
            source: a checkpoint directory, a transformers model, or a state dict with ``config=``.
            num_classes: the number of tags or the tag names; optional when the checkpoint has a head
                (then it must agree with it).
            preprocessor: ``"auto"`` reads the checkpoint's tokenizer files when ``source`` is a
                directory holding them; ``None`` for none; or a preprocessor.
            sequence_length: packed length of an ``"auto"`` preprocessor (default: the tokenizer's
                ``model_max_length``).
            config: the transformers config when ``source`` is a state dict.
            dtype: dtype policy of the new model.

        Raises:
            keras_lm.applications.CheckpointError: an unknown ``model_type``, or a head tensor that is
                missing or of the wrong shape (named in the message).

        Example:
            >>> tagger = TokenClassifier.from_hf("path/to/roberta-ner", sequence_length=128)  # doctest: +SKIP
            >>> tagger.predict_tags(["Angela Merkel visited Paris ."])  # doctest: +SKIP
        """
        from keras_lm.tasks.hf_heads import TOKEN_CLASSIFICATION, read_encoder_with_head

        checkpoint = read_encoder_with_head(source, TOKEN_CLASSIFICATION, "TokenClassifier.from_hf", config=config)
        head = _token_classification_head(checkpoint)
        architecture = checkpoint.architecture
        tagging_config = checkpoint.config if architecture is None or architecture.endswith(
            "ForTokenClassification") else {}
        num_classes, tag_names = _head_tags(head, tagging_config, num_classes, kwargs.pop("tag_names", None),
                                            checkpoint.head_name())
        if isinstance(preprocessor, str) and preprocessor == "auto":
            preprocessor = checkpoint.preprocessor(sequence_length)
        kwargs.setdefault("word_prefix", checkpoint.family.word_prefix)
        if head is not None:
            kwargs.setdefault("dropout", checkpoint.dropout())
        task = cls(checkpoint.build_backbone(dtype), num_classes, preprocessor=preprocessor, tag_names=tag_names,
                   **kwargs)
        if head is not None:
            checkpoint.head.copy_dense(task.get_layer("tag_logits"), checkpoint.prefix,
                                       hint="a tagging head is [tags, the backbone's hidden size]")
        return task

    # -- data ----------------------------------------------------------------------------------

    def _require_aligner(self, method: str) -> WordAligner:
        if self.aligner is None:
            raise ValueError(
                f"TokenClassifier.{method} needs a preprocessor to tokenize words; build the tagger with "
                "preprocessor=BertPreprocessor(...) (or a WordAligner)."
            )
        return self.aligner

    def dataset(self, examples: tf.data.Dataset, batch_size: int = 32, words_key: str = CONLL_WORDS,
                tags_key: str = CONLL_TAGS, shuffle: int | None = None, seed: int | None = None) -> tf.data.Dataset:
        """Training batches ``(features, token_labels, token_weights)`` from word-level examples.

        Args:
            examples: a ``tf.data.Dataset`` of dicts (``{words_key: words, tags_key: tag ids}``, the
                TFDS conll2003 layout) or of ``(words, tag_ids)`` pairs, one sentence per element.
            batch_size: sentences per batch.
            words_key, tags_key: the dict keys (``"pos"`` or ``"chunks"`` for conll2003's other tags).
            shuffle: a shuffle buffer size, or None for the given order.
            seed: the shuffle seed.

        Each sentence must have one tag per word and tag ids in ``[0, num_classes)``; otherwise
        ``fit``/``evaluate`` stop with one ValueError saying so.
        """
        aligner = self._require_aligner("dataset")
        spec = examples.element_spec
        if isinstance(spec, dict):
            missing = [key for key in (words_key, tags_key) if key not in spec]
            if missing:
                raise ValueError(f"TokenClassifier.dataset: the examples have no {missing} (keys: {sorted(spec)}); "
                                 "pass words_key= / tags_key=.")
            examples = examples.map(lambda example: (example[words_key], example[tags_key]))
        elif not (isinstance(spec, tuple) and len(spec) == 2):
            raise ValueError("TokenClassifier.dataset takes dict examples (conll2003 layout) or (words, tag_ids) "
                             f"pairs; got elements {spec}.")
        words_spec, tags_spec = examples.element_spec
        if words_spec.dtype != tf.string or words_spec.shape.rank != 1:
            raise ValueError(f"TokenClassifier.dataset: words must be a 1-D string sequence per sentence; got {words_spec}.")
        if not tags_spec.dtype.is_integer or tags_spec.shape.rank != 1:
            raise ValueError(
                f"TokenClassifier.dataset: tags must be a 1-D sequence of integer tag ids per sentence; got {tags_spec}."
            )
        if shuffle:
            examples = examples.shuffle(int(shuffle), seed=seed)
        num_classes = self.num_classes

        def to_batch(words, tags):
            words, tags = (t if isinstance(t, tf.RaggedTensor) else tf.RaggedTensor.from_tensor(t) for t in (words, tags))
            tags = tf.cast(tags, tf.int32)
            flat = tags.flat_values
            in_range = tf.reduce_all(tf.logical_and(flat >= 0, flat < num_classes))
            check = tf.debugging.Assert(in_range, [
                f"{LABEL_ERROR} TokenClassifier: tag ids must lie in [0, {num_classes}); got",
                tf.boolean_mask(flat, tf.logical_not(tf.logical_and(flat >= 0, flat < num_classes)))[:1]])
            with tf.control_dependencies([check]):
                tags = tags.with_flat_values(tf.identity(flat))
            packed = trim_padding(aligner(words, tags))
            features = {name: packed[name] for name in ENCODER_INPUTS}
            return features, packed["labels"], packed["label_weights"]

        batches = examples.ragged_batch(batch_size)
        return batches.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # -- training ------------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss="auto", metrics=None, weighted_metrics="auto", **kwargs):
        """Defaults: cross-entropy on logits averaged over first pieces of words, and their accuracy.

        Batches of ``dataset`` carry a weight per token (1 at a word's first piece, 0 elsewhere),
        so other pieces, special tokens and padding count in neither loss nor accuracy.
        """
        if isinstance(loss, str) and loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")
        if isinstance(weighted_metrics, str) and weighted_metrics == "auto":
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, weighted_metrics=weighted_metrics, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, validation_data=None, **kwargs):
        """``Model.fit``; a bad tag id or tag count in a ``dataset`` batch is one ValueError."""
        with _data_errors_as_value_errors():
            return super().fit(x, y, batch_size=batch_size, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        with _data_errors_as_value_errors():
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    # -- tagging -------------------------------------------------------------------------------

    def word_tag_ids(self, words: tf.RaggedTensor) -> tf.RaggedTensor:
        """Predicted tag ids ``[batch, (words)]`` of pre-split words (TF ops: usable in serving graphs).

        A word with no token in the packed sequence (cut by truncation, or tokenized to nothing)
        gets ``-1``.
        """
        aligned = trim_padding(self._require_aligner("word_tag_ids")(words))
        logits = self({name: aligned[name] for name in ENCODER_INPUTS}, training=False)
        token_tags = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return word_labels(token_tags, aligned["word_ids"], aligned["num_words"], fill=NO_WORD)

    def predict_tags(self, inputs, batch_size: int = 32, untagged: str | None = "O", return_words: bool = False):
        """Tags per word, as tag names (ids when the tagger has no names).

        Args:
            inputs: raw texts (a list of strings: split into words as BERT's basic tokenizer
                splits, see ``split_words``) or pre-split sentences (a list of lists of words).
            batch_size: sentences per forward pass.
            untagged: the tag of a word that got no token (truncation): ``"O"`` by default, or
                None for ``-1``/``None``.
            return_words: also return the words (useful for raw texts): ``(words, tags)``.
        """
        self._require_aligner("predict_tags")
        texts = [t for t in inputs]
        if texts and isinstance(texts[0], (str, bytes)):
            words = split_words(tf.constant(texts, tf.string)).to_list()
        else:
            words = [[w.encode("utf-8") if isinstance(w, str) else bytes(w) for w in sentence] for sentence in texts]
        ids = []
        for start in range(0, len(words), batch_size):
            chunk = words[start:start + batch_size]
            ragged = tf.ragged.constant(chunk, dtype=tf.string, ragged_rank=1) if any(chunk) else \
                tf.RaggedTensor.from_row_lengths(tf.constant([], tf.string), [0] * len(chunk))
            ids += self._word_tag_ids_function(ragged).to_list()
        tags = [[self._tag_name(i, untagged) for i in sentence] for sentence in ids]
        if return_words:
            return [[w.decode("utf-8", "replace") for w in sentence] for sentence in words], tags
        return tags

    @property
    def _word_tag_ids_function(self):
        if getattr(self, "_compiled_word_tag_ids", None) is None:
            self._compiled_word_tag_ids = tf.function(self.word_tag_ids, reduce_retracing=True)
        return self._compiled_word_tag_ids

    def _tag_name(self, tag_id: int, untagged):
        if tag_id < 0:
            return untagged if untagged is not None else (None if self.tag_names else -1)
        return self.tag_names[tag_id] if self.tag_names else tag_id

    def evaluate_entities(self, examples: tf.data.Dataset, scheme: str | None = None, batch_size: int = 32,
                          words_key: str = CONLL_WORDS, tags_key: str = CONLL_TAGS) -> EntityScores:
        """Entity-level precision / recall / F1 (``keras_lm.evaluation.tagging``) on word-level examples.

        Equal to ``seqeval`` on the same predicted and true tag names (``scheme=None``: its default
        mode; ``"IOB2"`` etc.: strict mode). Needs tag names.
        """
        if not self.tag_names:
            raise ValueError("evaluate_entities needs tag names (TokenClassifier(..., tag_names=[...])).")
        if isinstance(examples.element_spec, dict):
            examples = examples.map(lambda example: (example[words_key], example[tags_key]))
        sentences, truth = [], []
        for words, tags in examples.as_numpy_iterator():
            sentences.append(list(words))
            truth.append([self.tag_names[int(t)] for t in tags])
        predicted = self.predict_tags(sentences, batch_size=batch_size)
        return entity_scores(truth, predicted, scheme=scheme)

    def get_config(self):
        return {
            **self._base_config(),
            "num_classes": self.num_classes,
            "tag_names": self.tag_names,
            "dropout": self.dropout,
            "word_prefix": self.word_prefix,
        }


# -- Hugging Face heads -----------------------------------------------------------------------


def _token_classification_head(checkpoint):
    """``(weight [tags, hidden], bias [tags])`` of a ``*ForTokenClassification`` checkpoint, or None.

    A checkpoint whose config names another architecture keeps its head out (logged).
    """
    from keras_lm.applications.checkpoint_hf import CheckpointError

    architecture = checkpoint.architecture
    present = checkpoint.head.has(checkpoint.layout.output)
    if architecture is not None and not architecture.endswith("ForTokenClassification"):
        if present:
            logger.warning("%s is a %s: its classifier head is not a token tagger and is not imported.",
                           checkpoint.source, architecture)
        return None
    if not present:
        if architecture is not None:
            raise CheckpointError(f"The {architecture} checkpoint has no '{checkpoint.head_name()}': its tagging "
                                  "head is missing.")
        return None
    prefix = checkpoint.prefix
    return checkpoint.head.take(prefix + ".weight"), checkpoint.head.take(prefix + ".bias")


def _head_tags(head, hf_config: dict, num_classes, tag_names, weight_name: str = "classifier.weight"):
    """``(num_classes, tag_names)`` from the arguments, the head's shape and ``id2label``."""
    labels = hf_config.get("id2label") or {}
    names = [str(labels.get(str(i), labels.get(i, ""))) for i in range(len(labels))] if labels else None
    if names and (any(not n for n in names) or all(n == f"LABEL_{i}" for i, n in enumerate(names))):
        names = None  # transformers' placeholder names carry no tags
    if head is None:
        if num_classes is None and tag_names is None:
            if names is None:
                raise ValueError("The checkpoint has no token-classification head: pass num_classes (or tag names).")
            return len(names), names
        return _tag_setup(num_classes, tag_names)
    from keras_lm.applications.checkpoint_hf import CheckpointError

    rows = head[0].shape[0]
    if num_classes is None and tag_names is None:
        return _tag_setup(rows, names if names and len(names) == rows else None)
    wanted, wanted_names = _tag_setup(num_classes, tag_names)
    if wanted != rows:
        raise CheckpointError(f"'{weight_name}' has {rows} tags (shape {tuple(head[0].shape)}) but num_classes={wanted} "
                              "was asked for; drop num_classes to use the checkpoint's tags.")
    return wanted, wanted_names or (names if names and len(names) == rows else None)
