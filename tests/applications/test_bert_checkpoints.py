"""Google's original BERT TF checkpoints, keras-hub preset folders and format detection.

The Google checkpoint is written from known random numpy weights under Google's variable names
(a tf.compat.v1 graph and Saver, as the original BERT code saved them); the reference is
transformers' torch BertForPreTraining with the same weights (gelu_new = Google's tanh GELU).
"""
import json

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.applications import Bert, CheckpointError, Gpt2
from keras_lm.pretraining import BertPretrainer, MaskedLM

CONFIG = {"vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 64, "max_position_embeddings": 40, "type_vocab_size": 2, "hidden_act": "gelu",
          "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}
MASK_POSITIONS = np.array([[1, 4, 9], [0, 3, 6]], "int32")


def google_variables(config=CONFIG, seed=0):
    """Every variable of a Google BertForPreTraining-style checkpoint, random (norm scales around 1)."""
    rng = np.random.default_rng(seed)
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    shapes = {
        "bert/embeddings/word_embeddings": (config["vocab_size"], hidden),
        "bert/embeddings/token_type_embeddings": (config["type_vocab_size"], hidden),
        "bert/embeddings/position_embeddings": (config["max_position_embeddings"], hidden),
        "bert/embeddings/LayerNorm/gamma": (hidden,), "bert/embeddings/LayerNorm/beta": (hidden,),
        "bert/pooler/dense/kernel": (hidden, hidden), "bert/pooler/dense/bias": (hidden,),
        "cls/predictions/transform/dense/kernel": (hidden, hidden), "cls/predictions/transform/dense/bias": (hidden,),
        "cls/predictions/transform/LayerNorm/gamma": (hidden,), "cls/predictions/transform/LayerNorm/beta": (hidden,),
        "cls/predictions/output_bias": (config["vocab_size"],),
        "cls/seq_relationship/output_weights": (2, hidden), "cls/seq_relationship/output_bias": (2,),
    }
    for i in range(config["num_hidden_layers"]):
        layer = f"bert/encoder/layer_{i}"
        for projection in ("query", "key", "value"):
            shapes[f"{layer}/attention/self/{projection}/kernel"] = (hidden, hidden)
            shapes[f"{layer}/attention/self/{projection}/bias"] = (hidden,)
        shapes.update({
            f"{layer}/attention/output/dense/kernel": (hidden, hidden), f"{layer}/attention/output/dense/bias": (hidden,),
            f"{layer}/attention/output/LayerNorm/gamma": (hidden,), f"{layer}/attention/output/LayerNorm/beta": (hidden,),
            f"{layer}/intermediate/dense/kernel": (hidden, inner), f"{layer}/intermediate/dense/bias": (inner,),
            f"{layer}/output/dense/kernel": (inner, hidden), f"{layer}/output/dense/bias": (hidden,),
            f"{layer}/output/LayerNorm/gamma": (hidden,), f"{layer}/output/LayerNorm/beta": (hidden,),
        })
    return {name: ((1.0 if name.endswith("gamma") else 0.0) + 0.2 * rng.normal(size=shape)).astype("float32")
            for name, shape in shapes.items()}


def write_google_checkpoint(directory, variables, config=CONFIG, with_optimizer_slots=True):
    """bert_config.json + bert_model.ckpt.* written by a tf.compat.v1 Saver, as Google's code did."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bert_config.json").write_text(json.dumps(config))
    with tf.Graph().as_default():
        tensors = [tf.compat.v1.Variable(value, name=name) for name, value in variables.items()]
        if with_optimizer_slots:
            tensors += [tf.compat.v1.Variable(np.ones_like(value), name=f"{name}/adam_{slot}")
                        for name, value in list(variables.items())[:3] for slot in "mv"]
            tensors.append(tf.compat.v1.Variable(np.int64(1000), name="global_step"))
        saver = tf.compat.v1.train.Saver(tensors)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(directory / "bert_model.ckpt"), write_meta_graph=False)
    return directory


def torch_state(variables, num_layers):
    """The same weights under transformers' BertForPreTraining names (Linear weights are [out, in])."""
    state = {
        "bert.embeddings.word_embeddings.weight": variables["bert/embeddings/word_embeddings"],
        "bert.embeddings.token_type_embeddings.weight": variables["bert/embeddings/token_type_embeddings"],
        "bert.embeddings.position_embeddings.weight": variables["bert/embeddings/position_embeddings"],
        "bert.embeddings.LayerNorm.weight": variables["bert/embeddings/LayerNorm/gamma"],
        "bert.embeddings.LayerNorm.bias": variables["bert/embeddings/LayerNorm/beta"],
        "bert.pooler.dense.weight": variables["bert/pooler/dense/kernel"].T,
        "bert.pooler.dense.bias": variables["bert/pooler/dense/bias"],
        "cls.predictions.transform.dense.weight": variables["cls/predictions/transform/dense/kernel"].T,
        "cls.predictions.transform.dense.bias": variables["cls/predictions/transform/dense/bias"],
        "cls.predictions.transform.LayerNorm.weight": variables["cls/predictions/transform/LayerNorm/gamma"],
        "cls.predictions.transform.LayerNorm.bias": variables["cls/predictions/transform/LayerNorm/beta"],
        "cls.predictions.bias": variables["cls/predictions/output_bias"],
        "cls.seq_relationship.weight": variables["cls/seq_relationship/output_weights"],
        "cls.seq_relationship.bias": variables["cls/seq_relationship/output_bias"],
    }
    for i in range(num_layers):
        google, hf = f"bert/encoder/layer_{i}", f"bert.encoder.layer.{i}"
        pairs = [(f"{google}/attention/self/{p}", f"{hf}.attention.self.{p}") for p in ("query", "key", "value")]
        pairs += [(f"{google}/attention/output/dense", f"{hf}.attention.output.dense"),
                  (f"{google}/intermediate/dense", f"{hf}.intermediate.dense"),
                  (f"{google}/output/dense", f"{hf}.output.dense")]
        for source, target in pairs:
            state[target + ".weight"] = variables[source + "/kernel"].T
            state[target + ".bias"] = variables[source + "/bias"]
        for source, target in ((f"{google}/attention/output/LayerNorm", f"{hf}.attention.output.LayerNorm"),
                               (f"{google}/output/LayerNorm", f"{hf}.output.LayerNorm")):
            state[target + ".weight"] = variables[source + "/gamma"]
            state[target + ".bias"] = variables[source + "/beta"]
    return state


def padded_inputs(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((2, 12), "int32")
    mask[1, 8:] = 0
    return {"token_ids": rng.integers(0, CONFIG["vocab_size"], (2, 12)).astype("int32"),
            "segment_ids": (np.arange(12) >= 5).astype("int32")[None].repeat(2, 0) * mask, "padding_mask": mask}


@pytest.fixture(scope="module")
def google_checkpoint(tmp_path_factory):
    """(folder, numpy variables, reference outputs of transformers' BertForPreTraining on the same weights)."""
    import torch
    import transformers

    variables = google_variables()
    directory = write_google_checkpoint(tmp_path_factory.mktemp("google") / "uncased_L-2_H-32", variables)
    config = transformers.BertConfig(**{**CONFIG, "hidden_act": "gelu_new"}, layer_norm_eps=1e-12)
    model = transformers.BertForPreTraining(config).eval()
    state = {name: torch.tensor(value) for name, value in torch_state(variables, 2).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    data = padded_inputs()
    inputs = {"input_ids": torch.tensor(data["token_ids"], dtype=torch.long),
              "token_type_ids": torch.tensor(data["segment_ids"], dtype=torch.long),
              "attention_mask": torch.tensor(data["padding_mask"])}
    with torch.no_grad():
        backbone, heads = model.bert(**inputs), model(**inputs)
    reference = {"sequence_output": backbone.last_hidden_state.numpy(), "pooled_output": backbone.pooler_output.numpy(),
                 "mlm": np.take_along_axis(heads.prediction_logits.numpy(), MASK_POSITIONS[:, :, None], 1),
                 "nsp": heads.seq_relationship_logits.numpy()}
    return directory, variables, data, reference


def assert_close(actual, expected, key):
    difference = np.abs(np.asarray(actual) - expected).max()
    assert difference <= 1e-4, (key, difference)
    assert np.abs(expected).max() > 0.5, key


def test_google_weights_are_imported_exactly(google_checkpoint):
    directory, variables, _, _ = google_checkpoint
    pretrainer = BertPretrainer.from_google_checkpoint(directory, max_predictions=3)
    bert = pretrainer.backbone
    assert (bert.num_layers, bert.hidden_dim, bert.num_heads, bert.intermediate_dim, bert.vocabulary_size) == (
        2, 32, 4, 64, 120)
    assert bert.activation.__name__ == "gelu_approximate" and bert.layer_norm_epsilon == 1e-12
    layer = bert.transformer_layers[1]
    google = "bert/encoder/layer_1"
    projections = ("query", "key", "value")
    expected = [
        (bert.token_embedding.embeddings, variables["bert/embeddings/word_embeddings"]),
        (bert.segment_embedding.embeddings, variables["bert/embeddings/token_type_embeddings"]),
        (bert.position_embedding.embeddings, variables["bert/embeddings/position_embeddings"]),
        (bert.get_layer("embeddings_layer_norm").beta, variables["bert/embeddings/LayerNorm/beta"]),
        (layer.self_attention.qkv_dense.kernel,
         np.concatenate([variables[f"{google}/attention/self/{p}/kernel"] for p in projections], axis=1)),
        (layer.self_attention.qkv_dense.bias,
         np.concatenate([variables[f"{google}/attention/self/{p}/bias"] for p in projections])),
        (layer.self_attention.output_dense.kernel, variables[f"{google}/attention/output/dense/kernel"]),
        (layer.self_attention_norm.gamma, variables[f"{google}/attention/output/LayerNorm/gamma"]),
        (layer.feed_forward.intermediate_dense.kernel, variables[f"{google}/intermediate/dense/kernel"]),
        (layer.feed_forward.output_dense.bias, variables[f"{google}/output/dense/bias"]),
        (layer.feed_forward_norm.gamma, variables[f"{google}/output/LayerNorm/gamma"]),
        (bert.pooler.dense.kernel, variables["bert/pooler/dense/kernel"]),
        (pretrainer.masked_lm_head.transform_dense.kernel, variables["cls/predictions/transform/dense/kernel"]),
        (pretrainer.masked_lm_head.transform_layer_norm.gamma, variables["cls/predictions/transform/LayerNorm/gamma"]),
        (pretrainer.masked_lm_head.output_bias, variables["cls/predictions/output_bias"]),
        (pretrainer.next_sentence_head.dense.kernel, variables["cls/seq_relationship/output_weights"].T),
        (pretrainer.next_sentence_head.dense.bias, variables["cls/seq_relationship/output_bias"]),
    ]
    for variable, value in expected:
        np.testing.assert_array_equal(np.asarray(variable), value, err_msg=variable.path)


def test_google_outputs_match_transformers_on_the_same_weights(google_checkpoint):
    directory, _, data, reference = google_checkpoint
    bert = Bert.from_checkpoint(directory)  # detected from bert_config.json + bert_model.ckpt.index
    outputs = bert(data)
    for key in ("sequence_output", "pooled_output"):
        assert_close(outputs[key], reference[key], key)
    inputs = {**data, "mask_positions": MASK_POSITIONS}
    heads = BertPretrainer.from_google_checkpoint(directory / "bert_model.ckpt", max_predictions=3)(inputs)
    assert_close(heads["mlm"], reference["mlm"], "mlm")
    assert_close(heads["nsp"], reference["nsp"], "nsp")
    assert_close(MaskedLM.from_google_checkpoint(directory)(inputs)["mlm"], reference["mlm"], "mlm of MaskedLM")


def test_google_missing_variable_and_shape_mismatch_name_the_variable(tmp_path):
    variables = google_variables()
    del variables["bert/encoder/layer_1/output/dense/kernel"]
    directory = write_google_checkpoint(tmp_path / "missing", variables, with_optimizer_slots=False)
    with pytest.raises(CheckpointError, match=r"has no 'bert/encoder/layer_1/output/dense/kernel' \(a 2-layer BERT"):
        Bert.from_google_checkpoint(directory)
    directory = write_google_checkpoint(tmp_path / "shape", google_variables(), {**CONFIG, "intermediate_size": 48})
    with pytest.raises(CheckpointError, match=r"'bert/encoder/layer_0/intermediate/dense/kernel' in the Google "
                                              r"checkpoint .* has shape \(32, 64\), but .* needs \(32, 48\)"):
        Bert.from_google_checkpoint(directory)


def test_google_checkpoint_without_heads_or_with_an_unknown_activation(tmp_path):
    variables = {name: value for name, value in google_variables().items() if not name.startswith("cls/")}
    directory = write_google_checkpoint(tmp_path / "backbone", variables)
    assert Bert.from_google_checkpoint(directory).untrained_layers == ()
    with pytest.raises(CheckpointError, match=r"no masked-LM head \('cls/predictions/transform/dense/kernel'\).*"
                                              r"MaskedLM\(Bert.from_google_checkpoint\(...\)\)"):
        MaskedLM.from_google_checkpoint(directory)
    (directory / "bert_config.json").write_text(json.dumps({**CONFIG, "hidden_act": "swish"}))
    with pytest.raises(CheckpointError, match=r"hidden_act='swish'; supported: 'gelu', 'relu'"):
        Bert.from_google_checkpoint(directory)


def randomized(backbone, seed=0):
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:  # biases, LayerNorm gammas and betas too
        scale = 0.05 if weight.path.endswith("kernel") else 0.5
        offset = 1.0 if weight.path.endswith("gamma") else 0.0
        weight.assign(offset + scale * rng.normal(size=weight.shape).astype("float32"))
    return backbone


@pytest.fixture(scope="module")
def gpt2_preset(tmp_path_factory):
    backbone = randomized(keras_hub.models.GPT2Backbone(vocabulary_size=211, num_layers=2, num_heads=4, hidden_dim=32,
                                                        intermediate_dim=64, max_sequence_length=32), seed=2)
    directory = tmp_path_factory.mktemp("gpt2_preset")
    backbone.save_to_preset(str(directory))
    return backbone, directory


def test_keras_hub_bert_preset_with_its_tokenizer(tmp_path):
    backbone = randomized(keras_hub.models.BertBackbone(vocabulary_size=120, num_layers=2, num_heads=4, hidden_dim=32,
                                                        intermediate_dim=64, max_sequence_length=40), seed=1)
    backbone.save_to_preset(str(tmp_path))
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"word{i}" for i in range(115)]
    keras_hub.tokenizers.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(tmp_path))
    assert (tmp_path / "assets" / "tokenizer" / "vocabulary.txt").is_file()
    data = padded_inputs(1)
    expected = backbone(data)
    for bert in (Bert.from_keras_hub_preset(tmp_path), Bert.from_checkpoint(tmp_path)):
        outputs = bert(data)
        for key in ("sequence_output", "pooled_output"):
            assert_close(outputs[key], np.asarray(expected[key]), key)


def test_keras_hub_gpt2_preset(gpt2_preset):
    backbone, directory = gpt2_preset
    gpt = Gpt2.from_keras_hub_preset(directory)
    ids = np.random.default_rng(3).integers(0, 211, (2, 10)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    expected = np.asarray(backbone({"token_ids": ids, "padding_mask": mask}))
    ours = np.asarray(gpt({"token_ids": ids, "padding_mask": mask})["sequence_output"])
    real = mask.astype(bool)
    assert np.abs(ours[real] - expected[real]).max() <= 1e-4
    assert np.abs(expected[real]).max() > 0.5


def test_a_preset_of_another_model_is_one_clear_error(gpt2_preset):
    with pytest.raises(CheckpointError, match=r"holds a keras-hub GPT2Backbone preset; Bert.from_keras_hub_preset "
                                              r"reads BertBackbone presets"):
        Bert.from_checkpoint(gpt2_preset[1])


def test_transformers_folder_is_detected(tmp_path):
    import transformers

    config = transformers.BertConfig(**{**CONFIG, "hidden_act": "gelu_new"})
    transformers.BertModel(config).save_pretrained(tmp_path)
    data = padded_inputs(2)
    np.testing.assert_array_equal(np.asarray(Bert.from_checkpoint(tmp_path)(data)["sequence_output"]),
                                  np.asarray(Bert.from_hf(tmp_path)(data)["sequence_output"]))


def test_unknown_folder_lists_the_three_formats(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(CheckpointError) as error:
        Bert.from_checkpoint(tmp_path)
    message = str(error.value)
    for expected in ("Hugging Face transformers folder (config.json with 'model_type'", "original Google TF checkpoint",
                     "keras-hub preset", "Found: config.json, weights.npz."):
        assert expected in message, message
    with pytest.raises(FileNotFoundError, match="is not a checkpoint folder"):
        Bert.from_checkpoint(tmp_path / "missing")
