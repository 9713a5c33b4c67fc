"""Classification by prompting: cloze questions to a masked LM, demonstrations to a causal LM.

``ClozeClassifier`` puts a text into a template with one ``[MASK]`` ("{text} It was [MASK].") and
scores each class by the masked-LM logits of its verbalizer words at the mask (Schick & Schütze's
PET). It classifies zero-shot, and ``fit`` on a few labelled examples trains the masked LM with the
cross-entropy over the classes' verbalizer logits (PET's loss).

``InContextClassifier`` writes k labelled demonstrations and the query into a prompt and scores
each class by the log-probability a causal LM gives its label word after the prompt (GPT-3's
in-context learning); k = 0 is zero-shot.

Both can be calibrated on content-free inputs (Zhao et al. 2021, "Calibrate before use").
"""
from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import no_convert_scope

from keras_lm.tasks.task import Task

TEXT = "{text}"
LABEL = "{label}"
MASK = "[MASK]"
REDUCTIONS = ("mean", "max")
#: Traced in-context scoring functions, one per decoder backbone.
_SCORERS = weakref.WeakKeyDictionary()
DEFAULT_VERBALIZER = {"negative": ["bad"], "positive": ["good"]}
#: Content-free inputs of the calibration (Zhao et al. use "N/A", "" and "[MASK]").
CONTENT_FREE = ("N/A", "")


def _token_lists(tokenizer, texts) -> list:
    """Token ids of each text (a Python list of lists)."""
    if not texts:
        return []
    with no_convert_scope():
        ids = tokenizer(tf.constant([t if isinstance(t, bytes) else str(t) for t in texts], dtype=tf.string))
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_list()
    elif hasattr(ids, "numpy"):
        ids = ids.numpy()
    return [[int(i) for i in np.asarray(row).reshape(-1)] for row in ids]


def _special_id(tokenizer, *names):
    for name in names:
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise ValueError(
        f"The tokenizer {type(tokenizer).__name__} has no {' / '.join(names)}: a cloze prompt needs a "
        "masked-LM tokenizer with [CLS], [SEP], [PAD] and [MASK] tokens (e.g. keras_lm.tokenizers.WordPiece)."
    )


def calibration_bias(content_free_scores: np.ndarray) -> np.ndarray:
    """``-log`` of the mean class probabilities of content-free inputs ``[N, C]`` (contextual calibration).

    Added to the class scores, it makes the average content-free input equally likely in every class.
    """
    scores = np.asarray(content_free_scores, "float64")
    scores = scores - scores.max(axis=-1, keepdims=True)
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    return (-np.log(probabilities.mean(axis=0))).astype("float32")


# --- cloze ---------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="keras_lm")
class ClozePreprocessor(keras.layers.Layer):
    """Packs texts into a cloze template: ``[CLS] template-with-text [SEP]`` and the ``[MASK]`` position.

    The template holds ``{text}`` once and the mask token once. Its fixed parts are tokenized
    once; the text is tokenized on its own and cut (keeping its start) so that the whole prompt
    fits ``sequence_length``: the mask is never cut off. Pieces are joined at their token
    boundaries, which equals tokenizing the filled template whole wherever the template puts a
    space or punctuation around ``{text}`` and ``[MASK]`` (as WordPiece splits there).

    Output: ``{"token_ids", "segment_ids" (zeros), "padding_mask"}`` int32/bool ``[B, L]`` and
    ``"mask_positions"`` int32 ``[B, 1]``: the inputs of ``keras_lm.pretraining.MaskedLM``.

    Args:
        tokenizer: a ``WordPiece`` (anything with ``cls_id``, ``sep_id``, ``pad_id``, ``mask_id``).
        template: e.g. ``"{text} It was [MASK]."``.
        sequence_length: packed length ``L``.
        mask_token: how the template writes the mask.

    Raises:
        ValueError: a template without exactly one ``{text}`` and one mask, or whose mask (or
            whose fixed tokens) cannot fit ``sequence_length``.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "it", "was", "good", "fun", "."]
        >>> from keras_lm.tokenizers import WordPiece
        >>> packer = ClozePreprocessor(WordPiece(vocab), "{text} It was [MASK].", sequence_length=10)
        >>> out = packer(["Good fun."])
        >>> out["token_ids"].numpy().tolist(), out["mask_positions"].numpy().tolist()
        ([[2, 7, 8, 9, 5, 6, 4, 9, 3, 0]], [[6]])
    """

    def __init__(self, tokenizer, template: str = "{text} It was [MASK].", sequence_length: int = 128,
                 mask_token: str = MASK, **kwargs):
        super().__init__(**kwargs)
        if isinstance(tokenizer, dict):
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        self.tokenizer = tokenizer
        self.template = str(template)
        self.sequence_length = int(sequence_length)
        self.mask_token = str(mask_token)
        self._cls = _special_id(tokenizer, "cls_id", "start_token_id")
        self._sep = _special_id(tokenizer, "sep_id", "end_token_id")
        self._pad = _special_id(tokenizer, "pad_id", "pad_token_id")
        self._mask = _special_id(tokenizer, "mask_id", "mask_token_id")
        self._layout(self.template)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    def _layout(self, template: str) -> None:
        """Splits the template into fixed token runs around the text and the mask; checks the fit."""
        for marker in (TEXT, self.mask_token):
            if template.count(marker) != 1:
                raise ValueError(
                    f"The cloze template must hold {marker} exactly once; {template!r} holds it "
                    f"{template.count(marker)} times."
                )
        self._text_first = template.index(TEXT) < template.index(self.mask_token)
        first, second = (TEXT, self.mask_token) if self._text_first else (self.mask_token, TEXT)
        before, rest = template.split(first)
        middle, after = rest.split(second)
        self._before, self._middle, self._after = _token_lists(self.tokenizer, [before, middle, after])
        fixed = 3 + len(self._before) + len(self._middle) + len(self._after)  # [CLS], [MASK], [SEP]
        mask_position = 1 + len(self._before) + (len(self._middle) if self._text_first else 0)
        if mask_position >= self.sequence_length:
            raise ValueError(
                f"The template {template!r} puts {self.mask_token} at position {mask_position} even for an empty "
                f"text, beyond sequence_length={self.sequence_length}: shorten the template or raise sequence_length."
            )
        if fixed >= self.sequence_length:
            raise ValueError(
                f"The template {template!r} takes {fixed} tokens with [CLS] and [SEP], leaving no room for the text "
                f"in sequence_length={self.sequence_length}: shorten the template or raise sequence_length."
            )
        self._text_budget = self.sequence_length - fixed
        self._mask_offset = mask_position

    def call(self, inputs) -> dict:
        with tf.device("cpu"), no_convert_scope():
            texts = inputs if isinstance(inputs, tf.Tensor) else tf.convert_to_tensor(inputs, dtype=tf.string)
            unbatched = texts.shape.rank == 0
            if unbatched:
                texts = texts[None]
            text = tf.cast(self.tokenizer(texts), tf.int32)[:, : self._text_budget]
            rows = text.nrows()

            def fixed(ids):
                values = tf.constant([ids], tf.int32) if ids else tf.zeros((1, 0), tf.int32)
                return tf.RaggedTensor.from_tensor(tf.tile(values, [rows, 1]))

            mask = fixed([self._mask])
            middle = [text, fixed(self._middle), mask] if self._text_first else [mask, fixed(self._middle), text]
            packed = tf.concat([fixed([self._cls] + self._before), *middle, fixed(self._after + [self._sep])], axis=1)
            token_ids = packed.to_tensor(default_value=self._pad, shape=[None, self.sequence_length])
            mask_positions = tf.fill([rows], self._mask_offset)
            if self._text_first:
                mask_positions += tf.cast(text.row_lengths(), tf.int32)
            features = {
                "token_ids": token_ids,
                "segment_ids": tf.zeros_like(token_ids),
                "padding_mask": tf.sequence_mask(packed.row_lengths(), self.sequence_length),
                "mask_positions": mask_positions[:, None],
            }
            if unbatched:
                features = {name: value[0] for name, value in features.items()}
            return features

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "template": self.template,
            "sequence_length": self.sequence_length,
            "mask_token": self.mask_token,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_lm")
class VerbalizerScores(keras.layers.Layer):
    """Class scores from masked-LM logits at the mask: the mean (or max) logit of each class's words.

    Input: float logits ``[B, 1, V]`` (one mask position) or ``[B, V]``. Output: float32
    ``[B, C]`` plus a fixed (non-trainable) per-class ``class_bias`` that ``calibrate`` sets.
    The mean of logits ranks classes as the mean of log-probabilities does (they differ by one
    constant per example), so a softmax over the scores is the same either way.

    Args:
        token_ids: per class, the token ids of its verbalizer words.
        reduction: ``"mean"`` or ``"max"`` over a class's words.

    Example:
        >>> scores = VerbalizerScores([[1, 2], [3]])
        >>> scores(np.array([[0.0, 1.0, 3.0, 5.0]], "float32")).numpy().tolist()
        [[2.0, 5.0]]
    """

    def __init__(self, token_ids, reduction: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if reduction not in REDUCTIONS:
            raise ValueError(f"Unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}.")
        self.token_ids = [[int(i) for i in ids] for ids in token_ids]
        if len(self.token_ids) < 2 or not all(self.token_ids):
            raise ValueError("A verbalizer needs at least two classes, each with at least one token.")
        self.reduction = reduction
        self.class_bias = self.add_weight(shape=(len(self.token_ids),), initializer="zeros", trainable=False,
                                          name="class_bias", dtype="float32")

    def call(self, logits):
        logits = keras.ops.cast(logits, "float32")
        if len(logits.shape) == 3:
            logits = logits[:, 0, :]
        reduce = keras.ops.mean if self.reduction == "mean" else keras.ops.max
        scores = [reduce(keras.ops.take(logits, ids, axis=-1), axis=-1) for ids in self.token_ids]
        return keras.ops.stack(scores, axis=-1) + self.class_bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.token_ids))

    def get_config(self):
        config = super().get_config()
        config.update({"token_ids": self.token_ids, "reduction": self.reduction})
        return config


def _verbalizer_dict(verbalizer) -> dict:
    if not isinstance(verbalizer, dict) or len(verbalizer) < 2:
        raise ValueError(
            "`verbalizer` must map at least two class names (in label order) to their words, e.g. "
            f"{DEFAULT_VERBALIZER}; got {verbalizer!r}."
        )
    words = {str(name): [value] if isinstance(value, str) else list(value) for name, value in verbalizer.items()}
    for name, values in words.items():
        if not values or not all(isinstance(w, str) and w.strip() for w in values):
            raise ValueError(f"Class {name!r} of the verbalizer needs one or more non-empty words, got {values!r}.")
    return words


def verbalizer_token_ids(tokenizer, verbalizer: dict, vocabulary_size: int | None = None) -> list:
    """Per class, the single token id of each verbalizer word; one clear ValueError for a word that
    is not one token of the vocabulary (unknown, or split into several pieces)."""
    unk = getattr(tokenizer, "unk_id", None)
    result = []
    for name, words in _verbalizer_dict(verbalizer).items():
        ids = []
        for word, pieces in zip(words, _token_lists(tokenizer, words)):
            if not pieces or (unk is not None and unk in pieces):
                raise ValueError(
                    f"Verbalizer word {word!r} (class {name!r}) is not in the tokenizer's vocabulary (it becomes "
                    f"[UNK]): choose words the vocabulary holds whole."
                )
            if len(pieces) > 1:
                names = [str(tokenizer.id_to_token(p)) for p in pieces] if hasattr(tokenizer, "id_to_token") else pieces
                raise ValueError(
                    f"Verbalizer word {word!r} (class {name!r}) is {len(pieces)} tokens {names}; one [MASK] predicts "
                    "one token: choose words the vocabulary holds whole."
                )
            if vocabulary_size is not None and pieces[0] >= vocabulary_size:
                raise ValueError(f"Verbalizer word {word!r} has id {pieces[0]}, beyond the model's {vocabulary_size}.")
            ids.append(pieces[0])
        result.append(ids)
    flat = [i for ids in result for i in ids]
    if len(set(flat)) != len(flat):
        raise ValueError(f"A verbalizer token serves two classes: {verbalizer!r}.")
    return result


@keras.saving.register_keras_serializable(package="keras_lm")
class ClozeClassifier(Task):
    """Zero/few-shot classification with a masked LM: class scores from verbalizer logits at [MASK].

    Each text goes into ``template``; the masked-LM head's logits at the mask position give each
    class the mean (``reduction="mean"``) or max logit of its verbalizer words. Outputs (``predict``)
    are float32 class scores ``[batch, num_classes]`` (logits: softmax them for probabilities);
    ``fit`` / ``evaluate`` / ``predict`` take raw strings, labels are class ids in verbalizer order.

    Zero-shot: build and ``predict``. ``calibrate()`` (optional) adds the bias that makes
    content-free inputs equally likely in each class. Few-shot (PET): ``compile`` (the default
    loss is the cross-entropy over the class scores, i.e. the masked-LM loss restricted to the
    verbalizer tokens) and ``fit`` on the k examples; the backbone and head train, the
    calibration bias stays fixed.

    Args:
        masked_lm: a ``keras_lm.pretraining.MaskedLM`` (or ``BertPretrainer``), e.g.
            ``MaskedLM.from_hf(dir)`` for an imported BERT masked-LM head, or the ``.keras`` file
            of a pretraining run loaded with ``keras.saving.load_model``.
        preprocessor: a ``BertPreprocessor`` (its tokenizer and ``sequence_length`` are used) or
            a ``ClozePreprocessor``.
        template: the cloze, with ``{text}`` and ``[MASK]`` once each.
        verbalizer: class name -> word or words, in label order (label i = i-th class); every word
            must be one token of the vocabulary (multi-piece words are refused with their pieces).
        reduction: ``"mean"`` or ``"max"`` over a class's words.

    Example (a real start: ``MaskedLM.from_hf(dir)`` with ``BertPreprocessor.from_hf(dir, ...)``):
        >>> import keras_lm
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "it", "was", "good", "great", "bad", "film", "."]
        >>> pre = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(vocab), sequence_length=16)
        >>> mlm = keras_lm.pretraining.MaskedLM(keras_lm.applications.Bert("tiny", vocabulary_size=len(vocab)))
        >>> words = {"negative": ["bad"], "positive": ["good", "great"]}
        >>> cloze = ClozeClassifier(mlm, pre, verbalizer=words)
        >>> cloze.predict(["A great film."], verbose=0).shape
        (1, 2)
    """

    def __init__(self, masked_lm, preprocessor, template: str = "{text} It was [MASK].", verbalizer=None,
                 reduction: str = "mean", **kwargs):
        if not (hasattr(masked_lm, "masked_lm_head") and hasattr(masked_lm, "backbone")):
            raise TypeError(
                "ClozeClassifier needs a keras_lm masked LM (keras_lm.pretraining.MaskedLM / BertPretrainer, e.g. "
                f"MaskedLM.from_hf(dir)); got {type(masked_lm).__name__}."
            )
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        if isinstance(preprocessor, ClozePreprocessor):
            if preprocessor.template != template:
                raise ValueError(f"template {template!r} differs from the preprocessor's {preprocessor.template!r}.")
        elif hasattr(preprocessor, "tokenizer") and hasattr(preprocessor, "sequence_length"):
            preprocessor = ClozePreprocessor(preprocessor.tokenizer, template, preprocessor.sequence_length)
        else:
            raise TypeError(
                "`preprocessor` must be a BertPreprocessor (tokenizer + sequence_length) or a ClozePreprocessor; "
                f"got {type(preprocessor).__name__}."
            )
        verbalizer = _verbalizer_dict(DEFAULT_VERBALIZER if verbalizer is None else verbalizer)
        vocabulary_size = getattr(masked_lm.backbone, "vocabulary_size", None)
        token_ids = verbalizer_token_ids(preprocessor.tokenizer, verbalizer, vocabulary_size)
        scorer = VerbalizerScores(token_ids, reduction, name="verbalizer_scores")

        inputs = {name: keras.Input((None,), dtype="int32", name=name)
                  for name in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
        logits = masked_lm({name: inputs[name] for name in masked_lm.input})["mlm"]
        super().__init__(inputs=inputs, outputs=scorer(logits), **kwargs)

        self.masked_lm = masked_lm
        self.backbone = masked_lm.backbone
        self.preprocessor = preprocessor
        self.scorer = scorer
        self.template = template
        self.verbalizer = verbalizer
        self.reduction = reduction
        self.label_names = list(verbalizer)

    @property
    def trainable_weights(self):
        """The weights the class scores depend on: the backbone (without its pooler) and the
        masked-LM head; a next-sentence head or pooler the objective never reads is left out."""
        unused = {id(w) for w in getattr(self.masked_lm, "_weights_without_objective", list)()}
        unused |= {id(w) for w in getattr(getattr(self.masked_lm, "next_sentence_head", None), "weights", [])}
        return [w for w in super().trainable_weights if id(w) not in unused]

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Defaults: sparse cross-entropy over the class scores and accuracy."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def calibrate(self, content_free=CONTENT_FREE) -> np.ndarray:
        """Sets the class bias so that content-free texts (``"N/A"``, ``""``) score every class alike on
        average (contextual calibration); returns the bias. ``calibrate(())`` removes it."""
        self.scorer.class_bias.assign(np.zeros(len(self.label_names), "float32"))
        if len(content_free):
            bias = calibration_bias(self.predict(list(content_free), verbose=0))
            self.scorer.class_bias.assign(bias)
        return np.asarray(self.scorer.class_bias)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "masked_lm": keras.saving.serialize_keras_object(self.masked_lm),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "template": self.template,
            "verbalizer": self.verbalizer,
            "reduction": self.reduction,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["masked_lm"] = keras.saving.deserialize_keras_object(config["masked_lm"])
        config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)


# --- in-context ----------------------------------------------------------------------------------
class InContextClassifier:
    """Few-shot classification with a causal LM by the log-probability of each class's label word.

    The prompt is the k demonstrations, each ``template`` filled with its text and label word and
    followed by ``separator``, then the query: ``template`` up to ``{label}`` with the text filled
    in. A class scores the summed (``reduction="sum"``) or per-token mean log-probability of its
    label word's tokens after the prompt; spaces just before ``{label}`` belong to the label word
    (``" positive"``, one byte-level BPE token). ``scores``/``predict`` return ``[N, C]`` scores;
    ``k = 0`` (no ``examples``) is zero-shot; ``calibrate()`` adds contextual calibration.

    The start token (``causal_lm.start_token_id`` or the tokenizer's) leads the prompt when
    ``add_start_token`` (default: when there is one). Each demonstration is tokenized on its own,
    so their keys and values are computed once and shared by every query. Demonstrations that
    would leave fewer than ``max_query_tokens`` positions of the context are dropped from the
    front (``shots_used`` tells how many remain); a longer query keeps its last tokens.

    Args:
        causal_lm: a ``keras_lm.tasks.CausalLM`` (``CausalLM.from_hf(dir)`` for GPT-2 / Llama
            checkpoints) or a ``Decoder`` backbone.
        tokenizer: defaults to the causal LM's.
        template: with ``{text}`` and, after it, ``{label}``, once each.
        label_words: class name -> label word, in label order (label i = i-th class).
        examples: ``(text, label)`` demonstrations; a label is a class id or name.
        separator: written after each demonstration.
        reduction: ``"sum"`` or ``"mean"`` of the label tokens' log-probabilities.
        add_start_token: lead the prompt with the start token; None: when there is one.
        max_query_tokens: context positions kept free for the query; None: a quarter of the context.
        batch_size: queries per forward pass (each runs once per class).

    Example (a real start: ``keras_lm.tasks.CausalLM.from_hf(dir)`` of GPT-2 or a Llama-family model):
        >>> import keras_hub, keras_lm
        >>> lm = keras_lm.tasks.CausalLM(keras_lm.applications.Gpt2("tiny", vocabulary_size=256),
        ...                              keras_hub.tokenizers.ByteTokenizer())
        >>> icl = InContextClassifier(lm, label_words={"negative": "negative", "positive": "positive"},
        ...                           examples=[("A dull mess.", 0), ("A joy to watch.", 1)])
        >>> icl.predict(["Beautifully acted."]).shape
        (1, 2)
    """

    def __init__(self, causal_lm, tokenizer=None, template: str = "Review: {text}\nSentiment: {label}",
                 label_words=None, examples=(), separator: str = "\n\n", reduction: str = "sum",
                 add_start_token: bool | None = None, max_query_tokens: int | None = None, batch_size: int = 8):
        self.causal_lm = causal_lm
        self.backbone = getattr(causal_lm, "backbone", causal_lm)
        if not hasattr(self.backbone, "call_with_cache"):
            raise TypeError(
                f"InContextClassifier needs a keras_lm causal LM or decoder; got {type(causal_lm).__name__}.")
        self.tokenizer = tokenizer if tokenizer is not None else getattr(causal_lm, "tokenizer", None)
        if self.tokenizer is None:
            raise ValueError("InContextClassifier needs a tokenizer: pass `tokenizer=` or a CausalLM that has one.")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"Unknown reduction {reduction!r}; use sum or mean.")
        self.template = str(template)
        self.separator = str(separator)
        self.reduction = reduction
        self.batch_size = int(batch_size)
        context = int(self.backbone.max_sequence_length)
        self.max_query_tokens = context // 4 if max_query_tokens is None else int(max_query_tokens)
        label_words = {"negative": "negative", "positive": "positive"} if label_words is None else label_words
        if not isinstance(label_words, dict) or len(label_words) < 2:
            raise ValueError(f"`label_words` must map at least two class names to label words; got {label_words!r}.")
        self.label_names = [str(name) for name in label_words]
        self.label_words = [str(word) for word in label_words.values()]
        self._query_template, self._label_space, self._after_label = self._split_template(self.template)
        self.label_ids = _token_lists(self.tokenizer, [self._label_space + w for w in self.label_words])
        for word, ids in zip(self.label_words, self.label_ids):
            if not ids:
                raise ValueError(f"Label word {word!r} has no tokens.")
        if len({tuple(ids) for ids in self.label_ids}) != len(self.label_ids):
            raise ValueError(f"Two classes share the same label tokens: {label_words!r}.")
        self.start_ids = self._start_ids(add_start_token)
        self.examples = [(str(text), self._label_index(label)) for text, label in examples]
        self.class_bias = np.zeros(len(self.label_names), "float32")
        self._prefix_ids, self.shots_used = self._demonstrations()
        self._prefix_cache = None

    # --- prompt ---
    @staticmethod
    def _split_template(template: str) -> tuple:
        for marker in (TEXT, LABEL):
            if template.count(marker) != 1:
                raise ValueError(f"The template must hold {marker} exactly once; {template!r} holds it "
                                 f"{template.count(marker)} times.")
        before, after = template.split(LABEL)
        if TEXT not in before:
            raise ValueError(f"The template must put {TEXT} before {LABEL}: {template!r}.")
        query = before.rstrip(" ")
        return query, before[len(query):], after

    def _start_ids(self, add_start_token) -> list:
        start = getattr(self.causal_lm, "start_token_id", None)
        if start is None:
            start = getattr(self.tokenizer, "start_token_id", None)
        if add_start_token and start is None:
            raise ValueError("add_start_token=True, but neither the causal LM nor the tokenizer has a start token.")
        return [] if start is None or add_start_token is False else [int(start)]

    def _label_index(self, label) -> int:
        if isinstance(label, (str, bytes)):
            name = label.decode() if isinstance(label, bytes) else label
            if name not in self.label_names:
                raise ValueError(f"Unknown label {name!r}; the classes are {self.label_names}.")
            return self.label_names.index(name)
        index = int(label)
        if not 0 <= index < len(self.label_names):
            raise ValueError(f"Label {index} is not a class id in [0, {len(self.label_names)}).")
        return index

    def _query(self, text: str) -> str:
        return self._query_template.replace(TEXT, text)

    def demonstration(self, text: str, label) -> str:
        """One demonstration as written in the prompt (with its separator)."""
        word = self.label_words[self._label_index(label)]
        return self._query(text) + self._label_space + word + self._after_label + self.separator

    def _demonstrations(self) -> tuple:
        pieces = _token_lists(self.tokenizer, [self.demonstration(t, y) for t, y in self.examples])
        room = (self.backbone.max_sequence_length - self.max_query_tokens - max(map(len, self.label_ids))
                - len(self.start_ids))
        while pieces and sum(map(len, pieces)) > room:
            pieces = pieces[1:]
        return self.start_ids + [i for piece in pieces for i in piece], len(pieces)

    def encode(self, text: str) -> tuple:
        """``(prompt ids, [label ids per class])`` for ``text``: the tokens the scores are read from."""
        query = _token_lists(self.tokenizer, [self._query(text)])[0]
        return self._prefix_ids + self._fit_query(query), [list(ids) for ids in self.label_ids]

    def _fit_query(self, query: list) -> list:
        room = self.backbone.max_sequence_length - len(self._prefix_ids) - max(map(len, self.label_ids))
        return query[-room:] if len(query) > room else query

    # --- scoring ---
    def _cache(self):
        """The keys/values of the start token and demonstrations, computed on first use (one
        ``[1, 2, kv, P, hd]`` tensor per layer) and shared by every query."""
        if self._prefix_cache is None:
            length = len(self._prefix_ids)
            if length == 0:
                self._prefix_cache = ()
            else:
                prefix = tf.constant([self._prefix_ids], tf.int32)
                _, _, self._prefix_cache = self.backbone.call_with_cache(
                    prefix, self.backbone.init_cache(1, length), 0)
        return self._prefix_cache

    def _scorer(self):
        """The traced scoring function of this backbone (shared by every classifier on it)."""
        if self.backbone not in _SCORERS:
            backbone = weakref.ref(self.backbone)  # the cache must not keep the model alive

            def score(cache, token_ids, padding_mask, positions, targets, start):
                logits, _, _ = backbone().call_with_cache(token_ids, cache, start, padding_mask=padding_mask)
                picked = tf.gather(logits, positions, batch_dims=1)  # [rows, label tokens, V]
                log_probs = tf.nn.log_softmax(tf.cast(picked, tf.float32), axis=-1)
                return tf.gather(log_probs, targets, batch_dims=2)

            _SCORERS[self.backbone] = tf.function(score, reduce_retracing=True)
        return _SCORERS[self.backbone]

    def _score_batch(self, queries: list) -> np.ndarray:
        """Label log-probabilities ``[len(queries), C]`` of already tokenized queries."""
        if any(len(q) == 0 for q in queries):
            raise ValueError("A query has no tokens before the label: write some template text before {label}.")
        classes = len(self.label_ids)
        rows = [(q, label) for q in queries for label in self.label_ids]
        width = max(len(q) + len(label) for q, label in rows)
        prefix = len(self._prefix_ids)
        width = min(-(-width // 16) * 16, self.backbone.max_sequence_length - prefix)
        longest_label = max(map(len, self.label_ids))
        token_ids = np.zeros((len(rows), width), "int32")
        mask = np.zeros((len(rows), prefix + width), "int32")
        mask[:, :prefix] = 1
        positions = np.zeros((len(rows), longest_label), "int32")
        targets = np.zeros((len(rows), longest_label), "int32")
        weights = np.zeros((len(rows), longest_label), "float32")
        for r, (query, label) in enumerate(rows):
            sequence = query + label
            token_ids[r, :len(sequence)] = sequence
            mask[r, prefix:prefix + len(sequence)] = 1
            # Label token j is predicted from the position just before it.
            positions[r, :len(label)] = np.arange(len(query) - 1, len(query) + len(label) - 1)
            targets[r, :len(label)] = label
            weights[r, :len(label)] = 1.0
        cache = self._batch_cache(len(rows), width)
        start_index = tf.constant(prefix, tf.int32)
        log_probs = self._scorer()(cache, tf.constant(token_ids), tf.constant(mask), tf.constant(positions),
                                   tf.constant(targets), start_index)
        log_probs = np.asarray(log_probs) * weights
        totals = log_probs.sum(axis=1)
        if self.reduction == "mean":
            totals = totals / weights.sum(axis=1)
        return totals.reshape(len(queries), classes)

    def _batch_cache(self, rows: int, width: int) -> tuple:
        prefix = self._cache()
        empty = self.backbone.init_cache(rows, width)
        if not prefix:
            return empty
        return tuple(tf.concat([tf.repeat(p, rows, axis=0), e], axis=3) for p, e in zip(prefix, empty))

    def scores(self, texts) -> np.ndarray:
        """Float32 ``[N, C]``: each class's label log-probability after the prompt, plus the calibration bias."""
        texts = [texts] if isinstance(texts, (str, bytes)) else list(texts)
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
        if not texts:
            raise ValueError("scores got no texts.")
        queries = [self._fit_query(q) for q in _token_lists(self.tokenizer, [self._query(t) for t in texts])]
        parts = [self._score_batch(queries[i:i + self.batch_size]) for i in range(0, len(queries), self.batch_size)]
        return (np.concatenate(parts) + self.class_bias).astype("float32")

    predict = scores

    def calibrate(self, content_free=CONTENT_FREE) -> np.ndarray:
        """Contextual calibration: the bias that makes content-free texts equally likely per class on average."""
        self.class_bias = np.zeros(len(self.label_names), "float32")
        if len(content_free):
            self.class_bias = calibration_bias(self.scores(list(content_free)))
        return self.class_bias
