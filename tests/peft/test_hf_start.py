"""The PEFT methods on a backbone imported with Bert.from_hf: LoRA keeps transformers' outputs at
initialisation, trains only its matrices and the head, and merges exactly."""
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.peft.lora import lora, merge_lora


@pytest.fixture
def hf_checkpoint(movie_vocabulary, tmp_path, randomize_every_parameter):
    """A transformers BertModel (every parameter random) saved with the movie vocabulary."""
    import transformers

    config = transformers.BertConfig(vocab_size=len(movie_vocabulary), hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=128, max_position_embeddings=64)
    model = transformers.BertModel(config).eval()
    randomize_every_parameter(model, seed=0, is_norm_scale=lambda name: name.endswith("LayerNorm.weight"))
    model.save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(movie_vocabulary) + "\n", encoding="utf-8")
    return model, str(tmp_path / "bert")


@pytest.mark.slow  # long: run with -m slow
def test_lora_on_a_from_hf_backbone_matches_transformers_then_merges_exactly(
    hf_checkpoint, preprocessor, texts_and_labels, fit_and_diff
):
    import torch

    reference, directory = hf_checkpoint
    classifier = keras_lm.tasks.Classifier(keras_lm.applications.Bert.from_hf(directory), num_classes=2,
                                           preprocessor=preprocessor)
    lora(classifier, rank=4)
    features = preprocessor(tf.constant(texts_and_labels[0][:4]))
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(features["token_ids"].numpy(), dtype=torch.long),
                             attention_mask=torch.tensor(features["padding_mask"].numpy(), dtype=torch.long),
                             token_type_ids=torch.tensor(features["segment_ids"].numpy(), dtype=torch.long))
    real = features["padding_mask"].numpy().astype(bool)
    ours = classifier.backbone(features)["sequence_output"].numpy()
    np.testing.assert_allclose(ours[real], expected.last_hidden_state.numpy()[real], atol=1e-4)

    changed, paths = fit_and_diff(classifier, learning_rate=1e-2, epochs=2)
    assert changed == {p for p in paths if "lora_kernel" in p or p.startswith("logits/")}
    unmerged = classifier(features).numpy()
    merge_lora(classifier)
    np.testing.assert_allclose(classifier(features).numpy(), unmerged, atol=1e-5)


def test_adapters_prompts_and_bitfit_apply_to_a_from_hf_backbone(hf_checkpoint, preprocessor, texts_and_labels):
    from keras_lm.peft.adapters import add_adapters
    from keras_lm.peft.freezing import bitfit
    from keras_lm.peft.prompt_tuning import prompt_tuning
    from keras_lm.peft.variables import trainable_parameter_count

    _, directory = hf_checkpoint
    classifier = keras_lm.tasks.Classifier(keras_lm.applications.Bert.from_hf(directory), num_classes=2,
                                           preprocessor=preprocessor)
    features = preprocessor(tf.constant(texts_and_labels[0][:4]))
    expected = classifier(features).numpy()
    np.testing.assert_array_equal(add_adapters(classifier, bottleneck_dim=8)(features).numpy(), expected)
    prompted = prompt_tuning(classifier, num_prompts=4)
    assert prompted(features).shape == (4, 2) and trainable_parameter_count(prompted) == 4 * 64 + 130
    assert trainable_parameter_count(bitfit(classifier)) == 1410  # the shape of the small keras_lm BERT
