import doctest

import keras
import numpy as np
import pytest

import keras_lm.applications.transformer as transformer_module
from keras_lm.applications.transformer import TRANSFORMER_SIZES, Transformer, count_transformer_parameters

VOCABULARY = 97


def test_sizes_and_the_fixed_architecture():
    assert list(Transformer.sizes) == ["tiny", "small", "base", "big"]
    shapes = {name: tuple(size[k] for k in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim"))
              for name, size in TRANSFORMER_SIZES.items()}
    assert shapes == {"tiny": (2, 128, 4, 512), "small": (3, 256, 4, 1024), "base": (6, 512, 8, 2048),
                      "big": (6, 1024, 16, 4096)}
    model = Transformer("tiny", vocabulary_size=VOCABULARY, num_layers=1)
    assert (model.norm_first, model.normalization, model.position_embedding_type) == (False, "layer_norm", "sinusoidal")
    assert (model.use_bias, model.scale_embeddings, model.attention_scale, model.lm_head) == (True, True, None, None)
    assert (model.dropout, model.layer_norm_epsilon, model.num_decoder_layers) == (0.1, 1e-6, 1)
    assert model.encoder_final_norm is None and model.decoder_final_norm is None  # post-LN: no final norms
    assert Transformer("big", vocabulary_size=VOCABULARY, num_layers=1, hidden_dim=64, num_heads=4,
                       intermediate_dim=128).dropout == 0.3


def test_base_parameter_count_follows_the_architecture():
    d, ff, layers, vocabulary = 512, 2048, 6, 37000
    attention = 4 * d * d + 4 * d  # query, key, value, output projections with biases
    feed_forward = d * ff + ff + ff * d + d
    layer_norm = 2 * d
    encoder = layers * (attention + feed_forward + 2 * layer_norm)
    decoder = layers * (2 * attention + feed_forward + 3 * layer_norm)  # + cross-attention and its norm
    expected = vocabulary * d + encoder + decoder  # one shared embedding, tied output, no position weights
    model = Transformer("base", vocabulary_size=vocabulary)
    assert model.count_params() == expected == count_transformer_parameters(vocabulary, layers, d, ff) == 63_082_496
    assert round((expected - vocabulary * d) / 1e6, 1) == 44.1  # the stacks alone


def test_config_round_trip_and_keras_file(tmp_path):
    model = Transformer("tiny", vocabulary_size=VOCABULARY, num_layers=1, num_decoder_layers=2, hidden_dim=32,
                        num_heads=4, intermediate_dim=64, dropout=0.2)
    config = model.get_config()
    assert config["size"] == "tiny" and "norm_first" not in config and config["num_decoder_layers"] == 2
    assert Transformer.from_config(config).get_config() == config
    path = str(tmp_path / "transformer.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Transformer and restored.get_config() == config
    inputs = padded_batch()
    np.testing.assert_array_equal(logits_of(restored, inputs), logits_of(model, inputs))


@pytest.mark.parametrize(
    "args,kwargs,pattern",
    [
        (("huge",), {"vocabulary_size": 10}, r"Unknown Transformer size 'huge'; known sizes: tiny, small, base, big"),
        (("tiny",), {}, r"Transformer needs vocabulary_size=\.\.\."),
        (("tiny",), {"vocabulary_size": 10, "norm_first": True}, r"Transformer fixes norm_first=False"),
        (("tiny",), {"vocabulary_size": 10, "position_embedding": "relative"},
         r"Transformer fixes position_embedding='sinusoidal'"),
        ((None,), {"vocabulary_size": 10, "num_layers": 2}, r"needs explicit hidden_dim, num_heads, intermediate_dim"),
        (("tiny",), {"vocabulary_size": 10, "num_heads": 5}, r"hidden_dim=128 is not divisible by num_heads=5"),
    ],
)
def test_bad_configs_are_clear_errors(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Transformer(*args, **kwargs)


def padded_batch(seed=0):
    rng = np.random.default_rng(seed)
    source = rng.integers(1, VOCABULARY, (2, 9)).astype("int32")
    target = rng.integers(1, VOCABULARY, (2, 7)).astype("int32")
    source_mask = np.ones_like(source)
    source_mask[1, 5:] = 0
    return {"encoder_token_ids": source, "encoder_padding_mask": source_mask, "decoder_token_ids": target,
            "decoder_padding_mask": np.ones_like(target)}


def logits_of(model, inputs):
    return np.asarray(model.logits(model(inputs)["decoder_sequence_output"]))


def sinusoids(length, dim):
    """The paper's table: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    position = np.arange(length)[:, None]
    rate = 1.0 / 10000 ** (np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim))
    table[:, 0::2], table[:, 1::2] = np.sin(position * rate), np.cos(position * rate)
    return table.astype("float32")


def test_logits_match_torch_nn_transformer_layers(randomize_every_parameter):
    """Parity with PyTorch's post-LN ``nn.TransformerEncoder/DecoderLayer`` (every parameter random)."""
    import torch

    d, heads, ff, layers = 32, 4, 64, 2
    torch.manual_seed(0)
    encoder = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True, layer_norm_eps=1e-6),
        layers, enable_nested_tensor=False).eval()
    decoder = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(d, heads, ff, dropout=0.0, batch_first=True, layer_norm_eps=1e-6),
        layers).eval()
    embedding = torch.nn.Embedding(VOCABULARY, d)
    for seed, module in enumerate((encoder, decoder, embedding)):
        randomize_every_parameter(module, seed=seed, is_norm_scale=lambda name: "norm" in name and "weight" in name)

    model = Transformer(None, vocabulary_size=VOCABULARY, num_layers=layers, hidden_dim=d, num_heads=heads,
                        intermediate_dim=ff, dropout=0.0)
    numpy = lambda tensor: tensor.detach().numpy()
    model.token_embedding.embeddings.assign(numpy(embedding.weight))
    for ours, theirs in zip(model.encoder_layers + model.decoder_layers, list(encoder.layers) + list(decoder.layers)):
        weights = {w.path.split("/", 1)[1]: w for w in ours.weights}
        weights["self_attention/qkv/kernel"].assign(numpy(theirs.self_attn.in_proj_weight).T)
        weights["self_attention/qkv/bias"].assign(numpy(theirs.self_attn.in_proj_bias))
        weights["self_attention/output/kernel"].assign(numpy(theirs.self_attn.out_proj.weight).T)
        weights["self_attention/output/bias"].assign(numpy(theirs.self_attn.out_proj.bias))
        norms = ["self_attention_norm", "feed_forward_norm"]
        if hasattr(theirs, "multihead_attn"):
            cross = theirs.multihead_attn
            weights["cross_attention/query/kernel"].assign(numpy(cross.in_proj_weight[:d]).T)
            weights["cross_attention/query/bias"].assign(numpy(cross.in_proj_bias[:d]))
            weights["cross_attention/key_value/kernel"].assign(numpy(cross.in_proj_weight[d:]).T)
            weights["cross_attention/key_value/bias"].assign(numpy(cross.in_proj_bias[d:]))
            weights["cross_attention/output/kernel"].assign(numpy(cross.out_proj.weight).T)
            weights["cross_attention/output/bias"].assign(numpy(cross.out_proj.bias))
            norms = ["self_attention_norm", "cross_attention_norm", "feed_forward_norm"]
        for name, norm in zip(norms, (theirs.norm1, theirs.norm2, getattr(theirs, "norm3", None))):
            weights[f"{name}/gamma"].assign(numpy(norm.weight))
            weights[f"{name}/beta"].assign(numpy(norm.bias))
        weights["feed_forward/intermediate_dense/kernel"].assign(numpy(theirs.linear1.weight).T)
        weights["feed_forward/intermediate_dense/bias"].assign(numpy(theirs.linear1.bias))
        weights["feed_forward/output_dense/kernel"].assign(numpy(theirs.linear2.weight).T)
        weights["feed_forward/output_dense/bias"].assign(numpy(theirs.linear2.bias))

    inputs = padded_batch(1)
    with torch.no_grad():
        def embed(ids):
            return embedding(torch.tensor(ids, dtype=torch.long)) * d**0.5 + torch.tensor(sinusoids(ids.shape[1], d))

        source_padding = torch.tensor(inputs["encoder_padding_mask"] == 0)
        memory = encoder(embed(inputs["encoder_token_ids"]), src_key_padding_mask=source_padding)
        causal = torch.nn.Transformer.generate_square_subsequent_mask(inputs["decoder_token_ids"].shape[1])
        hidden = decoder(embed(inputs["decoder_token_ids"]), memory, tgt_mask=causal, tgt_is_causal=True,
                         memory_key_padding_mask=source_padding)
        expected = numpy(hidden @ embedding.weight.T)
    actual = logits_of(model, inputs)
    assert np.abs(expected).max() > 1.0
    assert np.abs(actual - expected).max() <= 1e-4


def test_docstring_examples():
    result = doctest.testmod(transformer_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
