"""BitFit and the freezing policies: after a real fit on movie_snippets text, exactly the intended
variables changed, checked variable by variable, on a keras_lm backbone and on a SavedModel layer."""
import pytest

import keras_lm
from keras_lm.peft.freezing import bitfit, freeze
from keras_lm.peft.variables import trainable_parameter_count

EMBEDDINGS = ("token_embedding/", "position_embedding/", "segment_embedding/", "embeddings_layer_norm/")


def _is_head(path):
    return path.startswith("logits/")


# Which variables should train, written out from the paths (independently of keras_lm.peft's rules).
EXPECTED = {
    "bitfit": lambda p: _is_head(p) or p.endswith(("/bias", "/beta")),
    "embeddings": lambda p: not p.startswith(EMBEDDINGS),
    "bottom_k": lambda p: not p.startswith(EMBEDDINGS + ("transformer_layer_0/",)),
    "all_but_head": _is_head,
}


@pytest.mark.parametrize("policy", list(EXPECTED))
def test_only_the_intended_variables_change_in_a_real_fit(policy, classifier, fit_and_diff):
    if policy == "bitfit":
        bitfit(classifier)
    else:
        freeze(classifier, policy, k=1 if policy == "bottom_k" else None)
    changed, paths = fit_and_diff(classifier)
    intended = {path for path in paths if EXPECTED[policy](path)}
    assert {v.path for v in classifier.trainable_variables} == intended
    assert changed == intended, (sorted(changed - intended), sorted(intended - changed))
    assert len(intended) >= 2


def test_bitfit_counts_exactly_the_bias_terms(classifier):
    bitfit(classifier)
    hidden, intermediate, blocks = 64, 128, 2
    # per block: qkv 3H, attention output H, two LayerNorm betas 2H, feed-forward I + H
    per_block = 3 * hidden + hidden + 2 * hidden + intermediate + hidden
    expected = blocks * per_block + hidden + hidden + (hidden * 2 + 2)  # + embeddings LN, pooler, head
    assert trainable_parameter_count(classifier) == expected == 1410


def test_policies_act_on_a_saved_model_layer_by_variable_name(classifier, preprocessor, tmp_path, fit_and_diff):
    exported = keras_lm.export.encoder(classifier.backbone, preprocessor, str(tmp_path / "hub"))
    reloaded = keras_lm.tasks.Classifier.from_saved_model(exported, num_classes=2)
    assert type(reloaded.backbone).__name__ == "SavedModelEncoder"
    bitfit(reloaded)
    assert trainable_parameter_count(reloaded) == 1410  # the same variables as the keras_lm backbone's
    changed, paths = fit_and_diff(reloaded)
    intended = {p for p in paths if _is_head(p) or p.endswith(("_bias", "_beta"))}
    assert changed == intended and len(intended) == 2 * 6 + 2 + 2, sorted(changed ^ intended)

    freeze(reloaded, "bottom_k", k=1)
    names = {v.path for v in reloaded.trainable_variables}
    assert names and not any(n.startswith(("token_embedding", "transformer_layer_0_")) for n in names)
    assert any(n.startswith("transformer_layer_1_") for n in names) and "logits/kernel" in names


def test_bad_policies_fail_with_one_clear_error(classifier, small_bert):
    with pytest.raises(ValueError, match="Unknown freezing policy 'top'"):
        freeze(classifier, "top")
    with pytest.raises(ValueError, match=r"needs `k`.*\[0, 2\]"):
        freeze(classifier, "bottom_k")
    with pytest.raises(ValueError, match=r"needs `k`.*got 3"):
        freeze(classifier, "bottom_k", k=3)
    with pytest.raises(ValueError, match="`k` belongs to policy 'bottom_k'"):
        freeze(classifier, "embeddings", k=1)
    with pytest.raises(ValueError, match="no task head"):
        freeze(small_bert(), "all_but_head")
    with pytest.raises(ValueError, match="no lora variables: apply peft.lora first"):
        freeze(classifier, "lora")
