"""Roberta, Roberta.from_hf and roberta_hf.masked_lm_from_hf against transformers' torch RoBERTa classes.

Every reference parameter is random (biases and LayerNorm scales too); checkpoints are written with
save_pretrained. Inputs are right-padded with RoBERTa's <pad> (id 1), which no real token uses, so
transformers numbers the real positions 2, 3, ... and keras_lm 0, 1, ...: outputs are compared at
the real positions (padded positions differ by design and are masked out everywhere).
"""
import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_lm.applications import CheckpointError, CheckpointNotFoundError
from keras_lm.applications.roberta import Roberta, roberta_config
from keras_lm.applications.roberta_hf import masked_lm_from_hf, sequence_classification_head
from reference import randomize_every_parameter

LENGTH = 24
PAD = 1
CONFIG = dict(vocab_size=307, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
              max_position_embeddings=34, type_vocab_size=1, layer_norm_eps=1e-5, hidden_act="gelu")
MASK_POSITIONS = np.array([[1, 5, 9, 20], [0, 3, 7, 12], [2, 4, 6, 0]], "int32")


def is_norm_scale(name):
    return name.endswith(("LayerNorm.weight", "layer_norm.weight"))


def random_roberta(model_class, seed, **overrides):
    import transformers

    config = transformers.RobertaConfig(**{**CONFIG, **overrides})
    model = model_class(config)
    randomize_every_parameter(model.eval(), seed=seed, is_norm_scale=is_norm_scale, std=0.2)
    return model


def padded_inputs(seed=0):
    """Three rows: one full, two right-padded with <pad>; real tokens are <s> … </s> and never <pad>."""
    rng = np.random.default_rng(seed)
    mask = np.ones((3, LENGTH), "int32")
    mask[1, 15:] = 0
    mask[2, 7:] = 0
    ids = rng.integers(3, CONFIG["vocab_size"], (3, LENGTH)).astype("int32")
    ids[:, 0] = 0
    ids[np.arange(3), mask.sum(1) - 1] = 2
    ids = np.where(mask == 1, ids, PAD)
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def torch_outputs(model, data):
    import torch

    inputs = {"input_ids": torch.tensor(data["token_ids"], dtype=torch.long),
              "attention_mask": torch.tensor(data["padding_mask"])}
    base = getattr(model, "roberta", model)
    with torch.no_grad():
        backbone = base(**inputs)
        heads = model(**inputs) if base is not model else None
    logits = None if heads is None else heads.logits.numpy()
    if logits is not None and logits.ndim == 3:
        logits = np.take_along_axis(logits, MASK_POSITIONS[:, :, None], 1)
    pooled = backbone.pooler_output
    return {"sequence_output": backbone.last_hidden_state.numpy(),
            "pooled_output": None if pooled is None else pooled.numpy(), "logits": logits}


def assert_close(actual, expected, key, where=None):
    actual, expected = np.asarray(actual), np.asarray(expected)
    if where is not None:
        actual, expected = actual[where], expected[where]
    difference = np.abs(actual - expected).max()
    assert difference <= 1e-4, (key, difference)
    assert np.abs(expected).max() > 0.5, key  # not a degenerate comparison


def assert_sequence_matches(roberta, reference, data):
    outputs = roberta(data)
    assert_close(outputs["sequence_output"], reference["sequence_output"], "sequence_output",
                 where=data["padding_mask"] == 1)
    return outputs


@pytest.fixture(scope="module")
def masked_lm_checkpoint(tmp_path_factory):
    import transformers

    model = random_roberta(transformers.RobertaForMaskedLM, seed=1)
    directory = tmp_path_factory.mktemp("roberta_mlm")
    model.save_pretrained(directory)
    data = padded_inputs(seed=1)
    return model, directory, data, torch_outputs(model, data)


def test_sizes_and_settings():
    assert {name: roberta_config(name, 50265, {})["num_layers"] for name in Roberta.sizes} == {
        "tiny": 2, "mini": 4, "small": 4, "medium": 8, "base": 12, "large": 24}
    base, large = roberta_config("base", 50265, {}), roberta_config("large", 50265, {})
    assert (base["hidden_dim"], base["num_heads"], base["intermediate_dim"]) == (768, 12, 3072)
    assert (large["hidden_dim"], large["num_heads"], large["intermediate_dim"]) == (1024, 16, 4096)
    assert (base["max_sequence_length"], base["num_segments"], base["layer_norm_epsilon"], base["activation"]) == (
        512, 1, 1e-5, "gelu")
    with pytest.raises(ValueError, match="Unknown RoBERTa size 'huge'"):
        Roberta("huge")


def test_config_round_trip_and_keras_file(tmp_path):
    roberta = Roberta("tiny", vocabulary_size=120, max_sequence_length=32, hidden_dim=32, num_heads=2)
    config = roberta.get_config()
    assert (config["size"], config["num_segments"], config["intermediate_dim"]) == ("tiny", 1, 128)
    assert Roberta.from_config(config).get_config() == config
    data = {key: value[:, :12] % 120 for key, value in padded_inputs().items()}
    expected = np.asarray(roberta(data)["sequence_output"])
    roberta.save(tmp_path / "roberta.keras")
    reloaded = keras.saving.load_model(tmp_path / "roberta.keras")
    assert type(reloaded) is Roberta
    np.testing.assert_allclose(np.asarray(reloaded(data)["sequence_output"]), expected, atol=1e-6)


def test_roberta_model_with_pooler_matches(tmp_path):
    import transformers

    model = random_roberta(transformers.RobertaModel, seed=0)
    model.save_pretrained(tmp_path)
    data = padded_inputs()
    reference = torch_outputs(model, data)
    roberta = Roberta.from_hf(tmp_path)
    assert type(roberta) is Roberta
    assert (roberta.num_layers, roberta.hidden_dim, roberta.num_heads, roberta.intermediate_dim) == (2, 64, 4, 128)
    # 34 position rows, of which the first pad_token_id + 1 = 2 are never used by right-padded inputs.
    assert (roberta.max_sequence_length, roberta.num_segments, roberta.layer_norm_epsilon) == (32, 1, 1e-5)
    assert roberta.untrained_layers == ()
    outputs = assert_sequence_matches(roberta, reference, data)
    assert_close(outputs["pooled_output"], reference["pooled_output"], "pooled_output")
    table = model.embeddings.position_embeddings.weight.detach().numpy()
    np.testing.assert_array_equal(np.asarray(roberta.position_embedding.embeddings), table[2:])


def test_masked_lm_backbone_and_head_match(masked_lm_checkpoint):
    _, directory, data, reference = masked_lm_checkpoint
    roberta = Roberta.from_hf(directory)
    assert roberta.untrained_layers == ("pooler",)  # RobertaForMaskedLM has no pooler
    assert_sequence_matches(roberta, reference, data)
    masked_lm = masked_lm_from_hf(directory, max_predictions=4)
    assert type(masked_lm.backbone) is Roberta
    assert masked_lm.masked_lm_head.token_embedding is masked_lm.backbone.token_embedding
    logits = masked_lm({**data, "mask_positions": MASK_POSITIONS})["mlm"]
    assert_close(logits, reference["logits"], "mlm")


def test_pytorch_bin_in_memory_model_and_state_dict(masked_lm_checkpoint, tmp_path):
    import torch

    model, _, data, reference = masked_lm_checkpoint
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # decoder weight and bias included
    model.config.to_json_file(tmp_path / "config.json")
    expected = np.asarray(Roberta.from_hf(tmp_path)(data)["sequence_output"])
    assert_close(expected, reference["sequence_output"], "sequence_output", where=data["padding_mask"] == 1)
    for other in (Roberta.from_hf(model), Roberta.from_hf(model.state_dict(), config=model.config)):
        np.testing.assert_array_equal(np.asarray(other(data)["sequence_output"]), expected)
    logits = masked_lm_from_hf(tmp_path, max_predictions=4)({**data, "mask_positions": MASK_POSITIONS})["mlm"]
    assert_close(logits, reference["logits"], "mlm from pytorch_model.bin")


def test_sequence_classifier_checkpoint_gives_its_logits(tmp_path):
    import transformers

    model = random_roberta(transformers.RobertaForSequenceClassification, seed=2, num_labels=3)
    model.save_pretrained(tmp_path)
    data = padded_inputs(seed=2)
    reference = torch_outputs(model, data)
    roberta = Roberta.from_hf(tmp_path)
    assert roberta.untrained_layers == ()  # classifier.dense is the pooler
    outputs = assert_sequence_matches(roberta, reference, data)
    kernel, bias = sequence_classification_head(tmp_path)
    assert kernel.shape == (64, 3)
    assert_close(np.asarray(outputs["pooled_output"]) @ kernel + bias, reference["logits"], "classifier logits")


def _error(source, **kwargs):
    with pytest.raises(CheckpointError) as error:
        Roberta.from_hf(source, **kwargs)
    return str(error.value)


def test_bert_and_gpt2_checkpoints_are_refused(tmp_path):
    import transformers

    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    bert.save_pretrained(tmp_path / "bert")
    assert "model_type='bert'" in _error(tmp_path / "bert") and "Bert.from_hf" in _error(tmp_path / "bert")
    gpt2 = transformers.GPT2Model(transformers.GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2))
    gpt2.save_pretrained(tmp_path / "gpt2")
    assert "model_type='gpt2'" in _error(tmp_path / "gpt2")
    # BERT tensors under a RoBERTa config: the layout error names the tensor it found.
    prefixed = {"bert." + name: value for name, value in bert.state_dict().items()}
    config = {**CONFIG, "model_type": "roberta", "vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 32}
    message = _error(prefixed, config=config)
    assert "not a RoBERTa checkpoint layout" in message and "'bert.embeddings.word_embeddings.weight'" in message


def test_missing_and_misshapen_tensors_are_named(masked_lm_checkpoint, tmp_path):
    import shutil

    _, directory, _, _ = masked_lm_checkpoint
    state = load_file(str(directory / "model.safetensors"))

    def variant(name, tensors):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(directory / "config.json", folder / "config.json")
        save_file(tensors, str(folder / "model.safetensors"))
        return folder

    missing = variant("missing", {k: v for k, v in state.items() if k != "roberta.encoder.layer.1.output.dense.bias"})
    message = _error(missing)
    assert "has no 'roberta.encoder.layer.1.output.dense.bias'" in message and "2-layer RoBERTa" in message

    value = state["roberta.encoder.layer.0.attention.self.key.weight"]
    wrong = variant("wrong", {**state, "roberta.encoder.layer.0.attention.self.key.weight": value[:, :32].copy()})
    message = _error(wrong)
    assert "'roberta.encoder.layer.0.attention.self.key.weight'" in message and "(64, 32)" in message

    table = state["roberta.embeddings.position_embeddings.weight"]
    positions = variant("positions", {**state, "roberta.embeddings.position_embeddings.weight": table[:30].copy()})
    message = _error(positions)
    assert "'roberta.embeddings.position_embeddings.weight'" in message and "(30, 64)" in message
    assert "(34, 64)" in message

    with pytest.raises(CheckpointError, match="has no masked-LM head \\('lm_head.dense.weight'\\)"):
        masked_lm_from_hf({k: v for k, v in state.items() if not k.startswith("lm_head.")},
                          config={**CONFIG, "model_type": "roberta"})


def test_hub_name_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match="FacebookAI/roberta-base"):
        Roberta.from_hf("FacebookAI/roberta-base")
