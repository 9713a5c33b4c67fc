"""Learning that only attention can do: synthetic tasks a frequency-only model cannot solve.

Every content token is drawn uniformly from ``WORDS`` ids, so knowing token frequencies is worth
nothing: the unigram baseline (computed in numpy on the evaluation labels) is about log(WORDS)
nats and 1/WORDS accuracy, and next-sentence labels are balanced. The only way to the answers is to
look at other positions: the token to predict is a copy of a token elsewhere in the row, and
"is next" means the second segment repeats the first. Models are trained on fresh random rows and
evaluated on rows never trained on.
"""
import keras
import numpy as np

import keras_lm
from keras_lm.pretraining import IS_NEXT, IS_RANDOM, BertPretrainer, CausalLM

WORDS = 16
PAD, UNK, CLS, SEP, MASK = range(5)  # BERT's special tokens; content ids follow them
SEGMENT = 4  # tokens per segment
BATCH = 32


def random_words(rng, rows, length, first_id):
    return rng.integers(first_id, first_id + WORDS, (rows, length))


def copy_pairs(rows, seed, masked_per_row=2):
    """``[CLS] a [SEP] b [SEP]`` rows, ``b`` a copy of ``a`` ("is next") or random words ("random").

    ``masked_per_row`` positions of ``b`` are replaced by ``[MASK]``; their labels count (weight 1)
    only in "is next" rows, where the copy in ``a`` gives them away.
    """
    rng = np.random.default_rng(seed)
    first = random_words(rng, rows, SEGMENT, first_id=MASK + 1)
    labels = rng.choice([IS_NEXT, IS_RANDOM], rows)
    second = np.where((labels == IS_NEXT)[:, None], first, random_words(rng, rows, SEGMENT, MASK + 1))
    column = lambda token: np.full((rows, 1), token)
    token_ids = np.concatenate([column(CLS), first, column(SEP), second, column(SEP)], axis=1)
    segment_ids = np.repeat([[0] * (SEGMENT + 2) + [1] * (SEGMENT + 1)], rows, axis=0)
    offsets = np.sort(np.argsort(rng.random((rows, SEGMENT)), axis=1)[:, :masked_per_row], axis=1)
    mask_positions = SEGMENT + 2 + offsets
    mask_ids = np.take_along_axis(token_ids, mask_positions, axis=1)
    np.put_along_axis(token_ids, mask_positions, MASK, axis=1)
    features = {
        "token_ids": token_ids.astype("int32"),
        "segment_ids": segment_ids.astype("int32"),
        "padding_mask": np.ones_like(token_ids, dtype="int32"),
        "mask_positions": mask_positions.astype("int32"),
    }
    targets = {"mlm": mask_ids.astype("int32"), "nsp": labels.astype("int32")}
    mlm_weights = np.repeat((labels == IS_NEXT)[:, None], masked_per_row, axis=1)
    weights = {"mlm": mlm_weights.astype("float32"), "nsp": np.ones(rows, "float32")}
    return features, targets, weights


def test_bert_pretrainer_learns_copies_and_next_sentence(unigram_baseline):
    keras.utils.set_random_seed(0)
    backbone = keras_lm.applications.Bert(
        "tiny", vocabulary_size=MASK + 1 + WORDS, hidden_dim=64, num_heads=4, intermediate_dim=128,
        max_sequence_length=2 * SEGMENT + 3, dropout=0.0,
    )
    pretrainer = BertPretrainer(backbone, max_predictions=2)
    pretrainer.compile(optimizer=keras_lm.training.adamw(3e-3, warmup=50, weight_decay=0.0))
    steps = 400  # copies are found after ~200 steps, next sentences after ~300 (5 seeds tried)
    x, y, w = copy_pairs(steps * BATCH, seed=1)
    pretrainer.fit(x, y, sample_weight=w, batch_size=BATCH, verbose=0)

    x, y, w = copy_pairs(1000, seed=2)  # held out
    result = pretrainer.evaluate(x, y, sample_weight=w, batch_size=500, return_dict=True, verbose=0)
    mlm_entropy, mlm_most_frequent = unigram_baseline(y["mlm"], w["mlm"])
    nsp_entropy, nsp_most_frequent = unigram_baseline(y["nsp"])
    print(result, {"mlm": (mlm_entropy, mlm_most_frequent), "nsp": (nsp_entropy, nsp_most_frequent)})
    assert mlm_entropy > 2.6 and mlm_most_frequent < 0.1  # the data leave frequencies nothing
    assert nsp_most_frequent < 0.53
    assert result["mlm_loss"] < mlm_entropy - 1.5
    assert result["mlm_accuracy"] > 0.9
    assert result["nsp_loss"] < nsp_entropy - 0.2
    assert result["nsp_accuracy"] > 0.8


def copy_rows(rows, seed, length=6):
    """Causal-LM rows ``a [SEP] a``: the loss counts only the predictions of the second copy."""
    rng = np.random.default_rng(seed)
    words = random_words(rng, rows, length, first_id=1)
    tokens = np.concatenate([words, np.zeros((rows, 1), int), words], axis=1).astype("int32")
    features = {"token_ids": tokens[:, :-1], "padding_mask": np.ones_like(tokens[:, :-1])}
    labels = tokens[:, 1:]
    weights = np.zeros(labels.shape, "float32")
    weights[:, length:] = 1.0
    return features, labels, weights


def test_causal_lm_learns_to_copy_earlier_tokens(unigram_baseline):
    keras.utils.set_random_seed(0)
    backbone = keras_lm.applications.Gpt2(
        "tiny", vocabulary_size=1 + WORDS, hidden_dim=32, intermediate_dim=64, max_sequence_length=12
    )
    model = CausalLM(backbone)
    model.compile(optimizer=keras_lm.training.adamw(3e-3, warmup=50, weight_decay=0.0))
    steps = 200  # copying is learnt after ~150 steps
    x, y, w = copy_rows(steps * BATCH, seed=1)
    model.fit(x, y, sample_weight=w, batch_size=BATCH, verbose=0)

    x, y, w = copy_rows(1000, seed=2)  # held out
    result = model.evaluate(x, y, sample_weight=w, batch_size=500, return_dict=True, verbose=0)
    entropy, most_frequent = unigram_baseline(y, w)
    cross_entropy = np.log(result["perplexity"])  # weighted mean ("loss" also counts the first copy's 0s)
    print(result, cross_entropy, entropy, most_frequent)
    assert entropy > 2.7 and most_frequent < 0.1
    assert cross_entropy < entropy - 2.0
    assert result["accuracy"] > 0.9
