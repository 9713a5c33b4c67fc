"""Classifiers with adapters or soft prompts, exported for serving, answer raw strings in a fresh
process as they do in memory (the merged-LoRA export is checked in test_lora.py)."""
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.peft.adapters import add_adapters
from keras_lm.peft.prompt_tuning import prompt_tuning

METHODS = {"adapters": lambda model: add_adapters(model, bottleneck_dim=8),
           "prompt": lambda model: prompt_tuning(model, num_prompts=4)}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_exported_peft_classifier_answers_raw_strings_in_a_fresh_process(
    method, classifier, texts_and_labels, fit_and_diff, load_in_fresh_process, tmp_path
):
    model = METHODS[method](classifier)
    changed, _ = fit_and_diff(model, learning_rate=1e-2, epochs=2)
    assert any("adapter" in path or "soft_prompt" in path for path in changed)
    texts = texts_and_labels[0][:6] + ["A gripping, beautifully acted film.", "Dull and far too long."]
    expected = tf.nn.softmax(model(model.preprocessor(tf.constant(texts)))).numpy()
    directory = keras_lm.export.serving(model, str(tmp_path / "serving" / "1"))
    result = load_in_fresh_process(directory, texts)
    for loader in ("eager", "session"):
        np.testing.assert_allclose(np.array(result[loader]["probabilities"]), expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()
