"""to_hf: keras_lm BERT / GPT-2 (every weight random) written as transformers folders give the same outputs there."""
import doctest
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications import Bert, Gpt2, hf_export
from keras_lm.applications.hf_export import bert_to_hf

VOCABULARY = 97
TEXTS = [
    "The king is dead. Long live the king!",
    "A gripping, beautifully-acted film; don't miss it.",
    "Café déjà vu — naïve résumé",
    "numbers 12345 and symbols #$%",
    "  spaces   and\ttabs\n",
]


def randomize_every_weight(model, seed):
    """Every variable from N(0, 0.2); LayerNorm scales from N(1, 0.2): a swapped or dropped mapping shows."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        center = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign((center + 0.2 * rng.standard_normal(variable.shape)).astype("float32"))


def small_bert(activation="gelu", seed=0):
    bert = Bert(None, vocabulary_size=VOCABULARY, num_layers=2, hidden_dim=32, num_heads=4, intermediate_dim=48,
                max_sequence_length=24, activation=activation, layer_norm_epsilon=1e-6)
    randomize_every_weight(bert, seed)
    return bert


def small_gpt2(seed=0, vocabulary_size=VOCABULARY):
    gpt = Gpt2(None, vocabulary_size=vocabulary_size, num_layers=2, hidden_dim=32, num_heads=4,
               max_sequence_length=32)
    randomize_every_weight(gpt, seed)
    return gpt


def bert_batch(seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCABULARY, (3, 11)).astype("int32")
    segments = np.zeros_like(ids)
    segments[:, 6:] = 1
    mask = np.ones_like(ids)
    mask[1, 7:] = 0  # a padded row
    return ids, segments, mask


def torch_inputs(ids, segments, mask):
    import torch

    as_long = lambda array: torch.tensor(array, dtype=torch.long)  # noqa: E731
    return {"input_ids": as_long(ids), "token_type_ids": as_long(segments), "attention_mask": as_long(mask)}


def trained_tokenizers():
    corpus = tf.data.Dataset.from_tensor_slices(TEXTS * 20)
    word_piece = keras_lm.tokenizers.WordPiece.train(corpus, vocabulary_size=VOCABULARY)
    byte_pair = keras_lm.tokenizers.BytePair.train(corpus, vocabulary_size=320,
                                                   special_tokens=("<|endoftext|>", "<|pad|>"))
    return word_piece, byte_pair


@pytest.mark.parametrize("activation,hidden_act", [("gelu", "gelu"), ("gelu_approximate", "gelu_new")])
def test_bert_outputs_equal_transformers_bert_model(tmp_path, activation, hidden_act):
    import torch
    import transformers

    bert = small_bert(activation)
    directory = bert.to_hf(str(tmp_path / "bert"))
    config = json.load(open(os.path.join(directory, "config.json")))
    assert config["architectures"] == ["BertModel"] and config["hidden_act"] == hidden_act
    assert (config["layer_norm_eps"], config["intermediate_size"], config["max_position_embeddings"]) == (1e-6, 48, 24)
    model = transformers.BertModel.from_pretrained(directory).eval()
    ids, segments, mask = bert_batch()
    with torch.no_grad():
        expected = model(**torch_inputs(ids, segments, mask))
    ours = bert({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
    np.testing.assert_allclose(np.asarray(ours["sequence_output"]), expected.last_hidden_state.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(ours["pooled_output"]), expected.pooler_output.numpy(), atol=1e-4)
    # Every weight was random, so the exported tensors differ from a fresh transformers init.
    fresh = transformers.BertModel(model.config).state_dict()
    for name, value in model.state_dict().items():
        assert not torch.equal(value, fresh[name]), name


def test_masked_lm_and_pretrainer_heads_export_as_bert_for_masked_lm_and_pretraining(tmp_path):
    import torch
    import transformers

    ids, segments, mask = bert_batch(2)
    positions = np.tile(np.arange(ids.shape[1], dtype="int32"), (ids.shape[0], 1))
    inputs = {"token_ids": ids, "segment_ids": segments, "padding_mask": mask, "mask_positions": positions}

    masked_lm = keras_lm.pretraining.MaskedLM(small_bert("gelu_approximate"))
    randomize_every_weight(masked_lm, seed=3)  # the head's transform, norm and output bias too
    directory = bert_to_hf(masked_lm.backbone, str(tmp_path / "mlm"), masked_lm_head=masked_lm.masked_lm_head)
    assert json.load(open(os.path.join(directory, "config.json")))["architectures"] == ["BertForMaskedLM"]
    model = transformers.BertForMaskedLM.from_pretrained(directory).eval()
    with torch.no_grad():
        expected = model(**torch_inputs(ids, segments, mask)).logits.numpy()
    np.testing.assert_allclose(np.asarray(masked_lm(inputs)["mlm"]), expected, atol=1e-4)

    pretrainer = keras_lm.pretraining.BertPretrainer(small_bert("gelu", seed=4))
    randomize_every_weight(pretrainer, seed=5)
    directory = bert_to_hf(pretrainer.backbone, str(tmp_path / "pretraining"),
                           masked_lm_head=pretrainer.masked_lm_head, next_sentence_head=pretrainer.next_sentence_head)
    model = transformers.BertForPreTraining.from_pretrained(directory).eval()
    with torch.no_grad():
        expected = model(**torch_inputs(ids, segments, mask))
    ours = pretrainer(inputs)
    np.testing.assert_allclose(np.asarray(ours["mlm"]), expected.prediction_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(ours["nsp"]), expected.seq_relationship_logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("lowercase", [True, False])
def test_word_piece_files_give_the_same_ids_in_transformers(tmp_path, lowercase):
    import transformers

    corpus = tf.data.Dataset.from_tensor_slices(TEXTS * 20)
    tokenizer = keras_lm.tokenizers.WordPiece.train(corpus, vocabulary_size=VOCABULARY, lowercase=lowercase)
    bert = Bert("tiny", vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=64)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=64)  # long enough: no truncation
    directory = bert.to_hf(str(tmp_path / "bert"), tokenizer=preprocessor)  # a preprocessor's WordPiece is used
    assert {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json"} <= set(os.listdir(directory))
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    assert type(hf).__name__.startswith("BertTokenizer")
    # Not compared: special tokens written as text ("[MASK]"), which transformers maps to their id
    # (its fill-mask convention) while keras_lm's WordPiece splits them like other words.
    strings = TEXTS + ["Unseen WÖRDS here, 東京 and 😀 too", "KING kings"]
    assert tokenizer(strings).to_list() == hf(strings, add_special_tokens=False)["input_ids"]
    packed = preprocessor((strings[:3], strings[3:6]))
    expected = hf(strings[:3], strings[3:6], padding="max_length", max_length=64)
    assert packed["token_ids"].numpy().tolist() == expected["input_ids"]
    assert packed["segment_ids"].numpy().tolist() == expected["token_type_ids"]
    assert packed["padding_mask"].numpy().astype(int).tolist() == expected["attention_mask"]


def test_gpt2_logits_and_greedy_continuations_equal_transformers(tmp_path):
    import torch
    import transformers

    gpt = small_gpt2()
    directory = gpt.to_hf(str(tmp_path / "gpt2"))
    config = json.load(open(os.path.join(directory, "config.json")))
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["activation_function"] == "gelu_new"
    model = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
    ids = np.random.default_rng(6).integers(0, VOCABULARY, (2, 12)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        expected = model(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)).logits.numpy()
    ours = np.asarray(gpt.logits(gpt({"token_ids": ids, "padding_mask": mask})["sequence_output"]))
    real = mask.astype(bool)
    assert np.abs(ours[real] - expected[real]).max() <= 1e-4

    prompts = [[5, 17, 42], [90, 3, 50, 7, 8]]
    generated = keras_lm.tasks.CausalLM(gpt).generate(prompts, max_new_tokens=10, stop_token_ids=[])
    for prompt, ours_ids in zip(prompts, generated):
        prompt_ids = torch.tensor([prompt])
        with torch.no_grad():
            theirs = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=10,
                                    min_new_tokens=10, do_sample=False, pad_token_id=0)
        assert ours_ids == theirs[0].tolist()


def test_gpt2_round_trip_through_from_hf_gives_identical_weights(tmp_path):
    gpt = small_gpt2(seed=7)
    back = Gpt2.from_hf(gpt.to_hf(str(tmp_path / "gpt2")))
    assert [w.path for w in back.weights] == [w.path for w in gpt.weights]
    for original, restored in zip(gpt.weights, back.weights):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(original), err_msg=original.path)


@pytest.mark.parametrize("activation", ["gelu", "gelu_approximate"])
def test_bert_round_trip_through_from_hf_gives_identical_weights(tmp_path, activation):
    bert = small_bert(activation, seed=8)
    back = Bert.from_hf(bert.to_hf(str(tmp_path / "bert")))
    assert (back.activation, back.layer_norm_epsilon) == (bert.activation, bert.layer_norm_epsilon)
    assert [w.path for w in back.weights] == [w.path for w in bert.weights]
    for original, restored in zip(bert.weights, back.weights):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(original), err_msg=original.path)


def test_byte_pair_files_give_the_same_ids_in_transformers(tmp_path):
    import transformers

    corpus = tf.data.Dataset.from_tensor_slices(TEXTS * 20)
    tokenizer = keras_lm.tokenizers.BytePair.train(corpus, vocabulary_size=320,
                                                   special_tokens=("<|endoftext|>", "<|pad|>"))
    gpt = small_gpt2(vocabulary_size=tokenizer.vocabulary_size())
    directory = gpt.to_hf(str(tmp_path / "gpt2"), tokenizer=tokenizer)
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= set(os.listdir(directory))
    config = json.load(open(os.path.join(directory, "config.json")))
    assert config["eos_token_id"] == config["bos_token_id"] == tokenizer.end_token_id
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    assert type(hf).__name__.startswith("GPT2Tokenizer")
    strings = TEXTS + ["unseen wörds here<|endoftext|>", "Hello<|pad|> world 😀"]
    assert tokenizer(strings).to_list() == hf(strings)["input_ids"]


def test_refuses_a_folder_that_is_not_a_previous_export_and_touches_nothing(tmp_path):
    bert = small_bert()
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    (folder / "config.json").write_text("{}")  # even a folder that looks like a checkpoint
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="mine"):
            bert.to_hf(str(folder), overwrite=overwrite)
    assert sorted(os.listdir(folder)) == ["config.json", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no staging folder left behind
    with pytest.raises(FileExistsError, match="folder name"):
        bert.to_hf("")


def test_overwrite_replaces_only_a_previous_export(tmp_path):
    import transformers

    directory = str(tmp_path / "gpt2")
    small_gpt2(seed=1).to_hf(directory)
    open(os.path.join(directory, "stale.txt"), "w").write("from the first export")
    replacement = small_gpt2(seed=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        replacement.to_hf(directory)
    replacement.to_hf(directory, overwrite=True)
    assert "stale.txt" not in os.listdir(directory)  # the whole previous export was replaced
    model = transformers.GPT2LMHeadModel.from_pretrained(directory)
    np.testing.assert_array_equal(model.transformer.wte.weight.detach().numpy(),
                                  np.asarray(replacement.token_embedding.embeddings))
    assert sorted(p for p in os.listdir(tmp_path)) == ["gpt2"]
    empty = tmp_path / "empty"
    empty.mkdir()
    small_gpt2().to_hf(str(empty))  # an existing empty folder needs no overwrite
    assert "model.safetensors" in os.listdir(empty)


def test_wrong_inputs_get_one_clear_error_and_write_nothing(tmp_path):
    word_piece, byte_pair = trained_tokenizers()
    bert, gpt = small_bert(), small_gpt2()
    target = str(tmp_path / "out")
    with pytest.raises(TypeError, match="WordPiece"):
        bert.to_hf(target, tokenizer=byte_pair)
    with pytest.raises(TypeError, match="BytePair"):
        gpt.to_hf(target, tokenizer=word_piece)
    with pytest.raises(ValueError, match="tokens but the model embeds only"):
        Gpt2(None, vocabulary_size=50, num_layers=1, hidden_dim=16, num_heads=2).to_hf(target, tokenizer=byte_pair)
    with pytest.raises(ValueError, match="norm_first"):
        Bert("tiny", vocabulary_size=VOCABULARY, norm_first=True).to_hf(target)
    with pytest.raises(TypeError, match="model.backbone"):
        bert_to_hf(keras_lm.pretraining.MaskedLM(bert), target)
    assert os.listdir(tmp_path) == []


def test_docstring_examples_run():
    result = doctest.testmod(hf_export, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
