"""LoRA on decoder blocks (GPT-2, Llama's gated feed-forward): only the LoRA matrices train and the
merged decoder equals the unmerged one."""
import numpy as np
import pytest

import keras_lm
from keras_lm.peft.lora import lora, lora_layers, merge_lora


@pytest.mark.parametrize("family, targets", [("Gpt2", ("qkv", "output", "intermediate_dense", "output_dense")),
                                             ("Llama", ("qkv", "output", "gate_up", "output_dense"))])
@pytest.mark.slow  # long: run with -m slow
def test_lora_on_decoder_blocks_merges_exactly(family, targets):
    decoder = getattr(keras_lm.applications, family)("tiny", vocabulary_size=200, max_sequence_length=32)
    ids = np.random.default_rng(0).integers(0, 200, (2, 12)).astype("int32")
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    lora(decoder, rank=4, targets=targets)
    layers = lora_layers(decoder)
    assert sorted({layer.name for layer in layers}) == sorted(targets) and len(layers) == 8
    assert all(v.path.endswith(("lora_kernel_a", "lora_kernel_b")) for v in decoder.trainable_variables)
    rng = np.random.default_rng(1)
    for layer in layers:
        layer.lora_kernel_b.assign(rng.normal(0, 0.05, layer.lora_kernel_b.shape).astype("float32"))
    unmerged = decoder(inputs)["sequence_output"].numpy()
    merge_lora(decoder)
    np.testing.assert_allclose(decoder(inputs)["sequence_output"].numpy(), unmerged, atol=1e-5)
