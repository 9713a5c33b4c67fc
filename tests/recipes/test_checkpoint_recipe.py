"""Fine-tuning from a checkpoint folder: `keras-lm finetune --from-hf DIR` and the import_checkpoint step."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_lm
from keras_lm.recipes import checkpoint as checkpoint_steps


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory, movie_vocabulary, randomize_every_parameter):
    """A small transformers BertModel (every parameter random) saved with a real vocab.txt."""
    import transformers

    directory = tmp_path_factory.mktemp("hf_checkpoint")
    (directory / "vocab.txt").write_text("".join(token + "\n" for token in movie_vocabulary), encoding="utf-8")
    config = transformers.BertConfig(vocab_size=len(movie_vocabulary), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = transformers.BertModel(config).eval()
    randomize_every_parameter(
        model, seed=3, is_norm_scale=lambda name: name.endswith("LayerNorm.weight"))
    model.save_pretrained(directory)
    transformers.BertTokenizer(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)
    return model, directory


@pytest.mark.slow  # long: run with -m slow
def test_finetune_from_hf_imports_exports_fine_tunes_and_serves(hf_checkpoint, tmp_path, load_in_fresh_process):
    import torch

    model, directory = hf_checkpoint
    output = str(tmp_path / "run")
    command = [sys.executable, "-m", "keras_lm.cli", "finetune", "--output", output, "--from-hf", str(directory),
               "--epochs", "1", "--max-train-examples", "96", "--batch-size", "32", "--learning-rate", "0.001",
               "--pooling", "mean", "--seeds", "0", "--compare-random-init", "true"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert process.returncode == 0, process.stderr[-3000:]

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["checkpoint"]["shape"]["hidden_dim"] == 32
    assert metrics["finetuning"]["pooling"] == "mean"
    assert metrics["finetuning"]["pretrained"]["seeds"] == [0]
    assert len(metrics["finetuning"]["random_init"]["runs"]) == 1  # the same shape, freshly initialised

    # The exported encoder is the checkpoint: its outputs equal transformers' on the same text.
    preprocessor = keras_lm.tokenizers.BertPreprocessor.from_hf(directory, sequence_length=16)
    features = preprocessor(["a gripping , beautifully acted film ."])
    encoder = keras_lm.tasks.SavedModelEncoder(os.path.join(output, "encoder", "encoder"))
    ours = encoder(features)["sequence_output"].numpy()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(features["token_ids"].numpy(), dtype=torch.long),
                         attention_mask=torch.tensor(features["padding_mask"].numpy(), dtype=torch.long),
                         token_type_ids=torch.tensor(features["segment_ids"].numpy(), dtype=torch.long))
    mask = features["padding_mask"].numpy().astype(bool)
    np.testing.assert_allclose(ours[mask], expected.last_hidden_state.numpy()[mask], atol=2e-2)  # bf16 where native

    answers = load_in_fresh_process(os.path.join(output, "serving", "1"), ["A gripping film.", "Dull."])
    for loaded in answers.values():
        probabilities = np.asarray(loaded["probabilities"])
        assert probabilities.shape == (2, 2)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_import_checkpoint_refuses_a_folder_that_is_no_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(Exception, match="config.json|bert_config.json|format"):
        checkpoint_steps.import_checkpoint(str(tmp_path / "run"), checkpoint=str(tmp_path))
    assert not (tmp_path / "run" / "encoder").exists()


def test_finetune_takes_either_an_encoder_or_a_checkpoint(tmp_path):
    from keras_lm.recipes import workflows

    with pytest.raises(ValueError, match="either `encoder` or `from_hf`"):
        workflows.finetune(str(tmp_path), encoder="some/encoder", from_hf="some/checkpoint")
    with pytest.raises(ValueError, match="`pooling` must be one of cls, mean"):
        workflows.finetune(str(tmp_path), pooling="max")
