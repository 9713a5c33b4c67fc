"""Bert.from_hf, MaskedLM.from_hf and BertPretrainer.from_hf against transformers' torch BERT classes.

Every reference parameter is random (biases and LayerNorm scales too); checkpoints are written with
save_pretrained and shared per module.
"""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lm
from keras_lm.applications import Bert, CheckpointError, CheckpointNotFoundError
from keras_lm.pretraining import BertPretrainer, MaskedLM
from reference import assert_close_at_bfloat16_scale, randomize_every_parameter

LENGTH = 24
MASK_POSITIONS = np.array([[1, 5, 9, 20], [0, 3, 7, 12], [2, 4, 6, 8]], "int32")
# The shape of a 6-layer sentence-embedding BERT (MiniLM-L6): hidden 384, 12 heads.
LARGE = dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536,
             max_position_embeddings=64)
SMALL_CASED = dict(vocab_size=997, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                   intermediate_size=128, max_position_embeddings=40, type_vocab_size=3, hidden_act="gelu_new",
                   layer_norm_eps=1e-7)


def is_norm_scale(name):
    return name.endswith("LayerNorm.weight")


def random_bert(model_class, seed, add_pooling_layer=None, std=0.2, **config):
    import transformers

    bert_config = transformers.BertConfig(**config)
    model = model_class(bert_config) if add_pooling_layer is None else model_class(bert_config, add_pooling_layer)
    randomize_every_parameter(model.eval(), seed=seed, is_norm_scale=is_norm_scale, std=std)
    return model


def padded_inputs(vocabulary_size, num_segments=2, seed=0):
    """Three rows of ids: one full, two right-padded; two segments in each."""
    rng = np.random.default_rng(seed)
    mask = np.ones((3, LENGTH), "int32")
    mask[1, 15:] = 0
    mask[2, 7:] = 0
    segments = (np.arange(LENGTH) >= 10).astype("int32")[None].repeat(3, 0) * (num_segments - 1)
    return {"token_ids": rng.integers(0, vocabulary_size, (3, LENGTH)).astype("int32"),
            "segment_ids": segments * mask, "padding_mask": mask}


def torch_outputs(model, data):
    """The reference: hidden states, pooled output (None without a pooler), MLM logits at
    MASK_POSITIONS and NSP logits (None for models without those heads)."""
    import torch

    inputs = {"input_ids": torch.tensor(data["token_ids"], dtype=torch.long),
              "token_type_ids": torch.tensor(data["segment_ids"], dtype=torch.long),
              "attention_mask": torch.tensor(data["padding_mask"])}
    base = getattr(model, "bert", model)
    with torch.no_grad():
        backbone = base(**inputs)
        heads = model(**inputs) if base is not model else None
    pooled = backbone.pooler_output
    logits = getattr(heads, "prediction_logits", getattr(heads, "logits", None))
    nsp = getattr(heads, "seq_relationship_logits", None)
    return {"sequence_output": backbone.last_hidden_state.numpy(),
            "pooled_output": None if pooled is None else pooled.numpy(),
            "mlm": None if logits is None else np.take_along_axis(logits.numpy(), MASK_POSITIONS[:, :, None], 1),
            "nsp": None if nsp is None else nsp.numpy()}


def assert_close(actual, expected, key):
    difference = np.abs(np.asarray(actual) - expected).max()
    assert difference <= 1e-4, (key, difference)
    assert np.abs(expected).max() > 0.5, key  # not a degenerate comparison


def assert_backbone_matches(bert, reference, data, pooled=True):
    outputs = bert(data)
    assert_close(outputs["sequence_output"], reference["sequence_output"], "sequence_output")
    if pooled:
        assert_close(outputs["pooled_output"], reference["pooled_output"], "pooled_output")


@pytest.fixture(scope="module")
def movie_vocabulary():
    """A real WordPiece vocabulary (under 1,000 tokens) trained on 600 movie_snippets sentences."""
    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"]).take(600)
    return keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=1000).get_vocabulary()


@pytest.fixture(scope="module")
def pretraining(tmp_path_factory, movie_vocabulary):
    """A BertForPreTraining of the 6-layer/384 shape on a real WordPiece vocabulary,
    saved with save_pretrained (safetensors) next to its vocab.txt, and its reference outputs."""
    import transformers

    # std 0.1: through six 384-wide layers, std 0.2 makes pre-LayerNorm activations so large that
    # float32 rounding alone reaches 1e-4.
    model = random_bert(transformers.BertForPreTraining, seed=0, std=0.1, vocab_size=len(movie_vocabulary), **LARGE)
    directory = tmp_path_factory.mktemp("bert_pretraining")
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(movie_vocabulary) + "\n", encoding="utf-8")
    data = padded_inputs(len(movie_vocabulary))
    return model, directory, data, torch_outputs(model, data)


@pytest.fixture(scope="module")
def cased_masked_lm():
    """A small BertForMaskedLM (no pooler) with another vocabulary size, three segment types and gelu_new."""
    import transformers

    model = random_bert(transformers.BertForMaskedLM, seed=1, **SMALL_CASED)
    data = padded_inputs(SMALL_CASED["vocab_size"], num_segments=3, seed=1)
    return model, data, torch_outputs(model, data)


def test_reference_checkpoint_is_random_everywhere(pretraining):
    model = pretraining[0]
    for name, parameter in model.named_parameters():
        values = parameter.detach().numpy()
        center = 1.0 if is_norm_scale(name) else 0.0
        assert 0.05 < np.abs(values - center).mean() < 0.15, name  # N(center, 0.1), not a default 0 or 1


def test_backbone_matches_bert_model_with_padding(pretraining):
    _, directory, data, reference = pretraining
    bert = Bert.from_hf(directory)
    assert (bert.num_layers, bert.hidden_dim, bert.num_heads, bert.intermediate_dim) == (6, 384, 12, 1536)
    assert (bert.max_sequence_length, bert.num_segments, bert.untrained_layers) == (64, 2, ())
    assert keras.activations.serialize(bert.activation) == "gelu"  # hidden_act "gelu" is the exact erf form
    assert_backbone_matches(bert, reference, data)


def test_pretrainer_heads_match_masked_lm_and_next_sentence_logits(pretraining):
    _, directory, data, reference = pretraining
    pretrainer = BertPretrainer.from_hf(directory, max_predictions=4)
    outputs = pretrainer({**data, "mask_positions": MASK_POSITIONS})
    assert_close(outputs["mlm"], reference["mlm"], "mlm")
    assert_close(outputs["nsp"], reference["nsp"], "nsp")  # same class order: 0 = is next, 1 = random
    # The MLM output stays tied: the head reads the backbone's token embedding.
    assert pretrainer.masked_lm_head.token_embedding is pretrainer.backbone.token_embedding
    masked_lm = MaskedLM.from_hf(directory, max_predictions=4)
    assert_close(masked_lm({**data, "mask_positions": MASK_POSITIONS})["mlm"], reference["mlm"], "mlm of MaskedLM")


def test_safetensors_import_never_imports_torch(pretraining):
    _, directory, data, reference = pretraining
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from keras_lm.applications import Bert\n"
        "data = {k: np.array(v, 'int32') for k, v in json.loads(sys.stdin.read()).items()}\n"
        "outputs = Bert.from_hf(sys.argv[1])(data)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('RESULT ' + json.dumps({k: np.asarray(v).tolist() for k, v in outputs.items()}))\n"
    )
    process = subprocess.run([sys.executable, "-c", script, str(directory)], capture_output=True, text=True,
                             input=json.dumps({k: v.tolist() for k, v in data.items()}), timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    line = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")][-1]
    outputs = json.loads(line[len("RESULT "):])
    for key in ("sequence_output", "pooled_output"):
        assert_close(np.array(outputs[key], "float32"), reference[key], key)


@pytest.mark.slow  # long: run with -m slow
def test_masked_lm_from_a_checkpoint_trains_on_real_text(movie_vocabulary, tmp_path):
    import transformers

    model = random_bert(transformers.BertForMaskedLM, seed=5,
                        **{**SMALL_CASED, "vocab_size": len(movie_vocabulary), "max_position_embeddings": 32})
    model.save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(movie_vocabulary) + "\n", encoding="utf-8")
    tokenizer = keras_lm.tokenizers.WordPiece(str(tmp_path / "vocab.txt"))  # the checkpoint's vocabulary
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    masked_lm = MaskedLM.from_hf(tmp_path, max_predictions=5)
    corpus = keras_lm.data.load("movie_snippets", split="train").take(96)
    batches = masked_lm.dataset(corpus, preprocessor, batch_size=16, shuffle=False, seed=0)  # fixed masks
    masked_lm.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = masked_lm.evaluate(batches, verbose=0, return_dict=True)["mlm_loss"]
    masked_lm.fit(batches.repeat(6), verbose=0)
    after = masked_lm.evaluate(batches, verbose=0, return_dict=True)["mlm_loss"]
    assert np.isfinite(before) and after < 0.8 * before, (before, after)


def test_in_memory_model_and_state_dict_give_the_same_weights(cased_masked_lm, tmp_path):
    model, data, reference = cased_masked_lm
    model.save_pretrained(tmp_path)
    from_folder = Bert.from_hf(tmp_path)
    expected = np.asarray(from_folder(data)["sequence_output"])
    assert_close(expected, reference["sequence_output"], "sequence_output")
    state = model.state_dict()
    assert "cls.predictions.decoder.weight" in state  # the tied copy, checked against the embeddings
    for other in (Bert.from_hf(model), Bert.from_hf(state, config=model.config)):
        np.testing.assert_array_equal(np.asarray(other(data)["sequence_output"]), expected)


def test_cased_gelu_new_masked_lm_from_pytorch_bin_and_shards(cased_masked_lm, tmp_path):
    import torch

    model, data, reference = cased_masked_lm
    inputs = {**data, "mask_positions": MASK_POSITIONS}
    binary, sharded = tmp_path / "bin", tmp_path / "sharded"
    model.config.save_pretrained(binary)
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    model.save_pretrained(sharded, max_shard_size="100KB")
    assert len(list(sharded.glob("model-*.safetensors"))) > 2
    for directory in (binary, sharded):
        masked_lm = MaskedLM.from_hf(directory, max_predictions=4)
        backbone = masked_lm.backbone
        assert (backbone.vocabulary_size, backbone.num_segments, backbone.layer_norm_epsilon) == (997, 3, 1e-7)
        assert backbone.activation is keras_lm.layers.utils.get_activation("gelu_approximate")
        assert backbone.untrained_layers == ("pooler",)  # BertForMaskedLM has no pooler
        assert_backbone_matches(backbone, reference, data, pooled=False)
        assert_close(masked_lm(inputs)["mlm"], reference["mlm"], "mlm")


def test_mixed_bfloat16_import_matches_float32(cased_masked_lm):
    model, data, _ = cased_masked_lm
    full, mixed = Bert.from_hf(model), Bert.from_hf(model, dtype="mixed_bfloat16")
    assert mixed.transformer_layers[0].compute_dtype == "bfloat16"
    assert mixed.token_embedding.embeddings.dtype == "float32"
    full_data = {**data, "padding_mask": np.ones_like(data["padding_mask"])}
    expected = np.asarray(full(full_data)["sequence_output"])
    actual = np.asarray(mixed(full_data)["sequence_output"]).astype("float32")
    assert_close_at_bfloat16_scale(actual, expected)


def test_pretrainer_of_a_masked_lm_checkpoint_needs_next_sentence_false(cased_masked_lm):
    model, data, reference = cased_masked_lm
    with pytest.raises(CheckpointError,
                       match=r"no next-sentence head \('cls.seq_relationship.weight'.*next_sentence=False.*"
                             r"BertPretrainer\(Bert.from_hf\(...\)\)"):
        BertPretrainer.from_hf(model)
    pretrainer = BertPretrainer.from_hf(model, next_sentence=False, max_predictions=4)
    assert_close(pretrainer({**data, "mask_positions": MASK_POSITIONS})["mlm"], reference["mlm"], "mlm")


def test_sentence_embedding_layout_without_prefix_or_pooler(tmp_path):
    import transformers

    model = random_bert(transformers.BertModel, seed=2, add_pooling_layer=False, **SMALL_CASED)
    model.save_pretrained(tmp_path)
    data = padded_inputs(SMALL_CASED["vocab_size"], num_segments=3, seed=2)
    bert = Bert.from_hf(tmp_path)
    assert bert.untrained_layers == ("pooler",)
    assert_backbone_matches(bert, torch_outputs(model, data), data, pooled=False)
    with pytest.raises(CheckpointError, match=r"no masked-LM head.*MaskedLM\(Bert.from_hf\(...\)\)"):
        MaskedLM.from_hf(tmp_path)


def test_sequence_classification_checkpoint_imports_its_backbone():
    import transformers

    model = random_bert(transformers.BertForSequenceClassification, seed=3, num_labels=3, **SMALL_CASED)
    data = padded_inputs(SMALL_CASED["vocab_size"], num_segments=3, seed=3)
    bert = Bert.from_hf(model.state_dict(), config=model.config.to_dict())
    assert bert.untrained_layers == ()
    assert_backbone_matches(bert, torch_outputs(model.bert, data), data)


def test_old_gamma_beta_names_and_position_ids_buffer(cased_masked_lm):
    model, data, reference = cased_masked_lm
    old = {}
    for name, tensor in model.state_dict().items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old[name] = tensor.numpy()
    old["bert.embeddings.position_ids"] = np.arange(40)[None]
    config = {**model.config.to_dict(), "position_embedding_type": "absolute"}
    assert_close(MaskedLM.from_hf(old, config=config)({**data, "mask_positions": MASK_POSITIONS})["mlm"],
                 reference["mlm"], "mlm")


def small_checkpoint(directory, seed=4):
    """A small BertForMaskedLM saved with save_pretrained; returns the folder."""
    import transformers

    random_bert(transformers.BertForMaskedLM, seed=seed, **SMALL_CASED).save_pretrained(directory)
    return directory


def test_missing_tensor_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    directory = small_checkpoint(tmp_path)
    state = load_file(directory / "model.safetensors")
    del state["bert.encoder.layer.1.output.dense.weight"]
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"has no 'bert.encoder.layer.1.output.dense.weight' \(a 2-layer BERT"):
        Bert.from_hf(directory)


def test_shape_mismatch_is_named(tmp_path):
    directory = small_checkpoint(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "vocab_size": 1000}))
    with pytest.raises(CheckpointError,
                       match=r"'bert.embeddings.word_embeddings.weight' .* has shape \(997, 64\).* needs \(1000, 64\)"):
        Bert.from_hf(directory)


@pytest.mark.parametrize("override,pattern", [
    ({"position_embedding_type": "relative_key"}, r"position_embedding_type='relative_key' \(only 'absolute'\)"),
    ({"is_decoder": True, "add_cross_attention": True}, r"is_decoder=True.*add_cross_attention=True"),
    ({"hidden_act": "silu"}, r"hidden_act='silu'; supported: 'gelu', 'gelu_new'"),
    ({"model_type": "gpt2"}, r"model_type='gpt2'"),
])
def test_unsupported_configs_are_one_clear_error(override, pattern):
    config = {"model_type": "bert", **SMALL_CASED, **override}
    with pytest.raises(CheckpointError, match=pattern):
        Bert.from_hf({}, config=config)


def test_unknown_layout_and_untied_decoder(cased_masked_lm):
    import transformers

    gpt2 = transformers.GPT2Model(transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(CheckpointError, match=r"not a BERT checkpoint layout.*found \d+ tensors such as 'wte.weight'"):
        Bert.from_hf(gpt2.state_dict(), config={"model_type": "bert", **SMALL_CASED})
    model = cased_masked_lm[0]
    state = {name: tensor.numpy().copy() for name, tensor in model.state_dict().items()}
    state["cls.predictions.decoder.weight"] += 0.5
    with pytest.raises(CheckpointError, match=r"'cls.predictions.decoder.weight'.*differs from the word embeddings"):
        MaskedLM.from_hf(state, config=model.config)


def test_extra_backbone_tensor_is_refused(cased_masked_lm):
    model = cased_masked_lm[0]
    state = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    state["bert.encoder.layer.2.output.dense.weight"] = state["bert.encoder.layer.1.output.dense.weight"]
    with pytest.raises(CheckpointError, match=r"no place for: 'bert.encoder.layer.2.output.dense.weight'"):
        Bert.from_hf(state, config=model.config)


def test_hub_name_offline_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so the name is not a local folder
    name = "keras-lm-tests/bert-not-in-any-cache"
    with pytest.raises(CheckpointNotFoundError) as error:
        Bert.from_hf(name)
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message
    assert (f"Download config.json, model.safetensors, vocab.txt and tokenizer_config.json of {name} from "
            f"https://huggingface.co/{name} into a folder and pass that folder") in message


def test_config_with_more_layers_than_the_checkpoint(tmp_path):
    directory = small_checkpoint(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointError, match=r"has no 'bert.encoder.layer.2.attention.self.query.weight' \(a 3-layer"):
        MaskedLM.from_hf(directory)
