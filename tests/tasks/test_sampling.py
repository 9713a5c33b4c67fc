"""CausalLM.generate's samplers against numpy: top-k set, nucleus, temperature, and width-4 beam search.

One new token is drawn for a batch of 512 copies of one prompt (every row an independent draw);
every draw must lie in numpy's top-k set / nucleus and the counts must fit the renormalized
softmax(logits / T) (chi-square). Beam search is compared with a brute-force cacheless search.
"""
import keras_hub
import numpy as np
import pytest

from keras_lm.applications import Gpt2
from keras_lm.tasks import CausalLM

DRAWS = 512  # a power of two: the batch bucket holds no extra rows
PROMPT = [5, 17, 42]
TEMPERATURE = 0.25


def spread_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def backbone():
    return spread_weights(Gpt2("tiny", vocabulary_size=256, hidden_dim=32, num_heads=2, max_sequence_length=32))


def full_sequence_log_probs(backbone, rows):
    """float64 log-softmax of the last position's logits for each row (whole sequences, no cache)."""
    x = np.asarray(rows, "int32")
    logits = np.asarray(backbone.logits(backbone({"token_ids": x, "padding_mask": np.ones_like(x)})["sequence_output"]))
    last = logits[:, -1].astype("float64")
    last -= last.max(axis=-1, keepdims=True)
    return last - np.log(np.exp(last).sum(axis=-1, keepdims=True))


def softmax(logits, temperature):
    scaled = (logits - logits.max()) / temperature
    return np.exp(scaled) / np.exp(scaled).sum()


def top_k_set(probabilities, k):
    order = np.argsort(-probabilities)
    assert probabilities[order[k - 1]] > 1.001 * probabilities[order[k]]  # no near-tie at the cut
    return order[:k]


def nucleus(probabilities, p):
    """The most likely tokens whose preceding cumulative probability is below ``p``."""
    order = np.argsort(-probabilities)
    before = np.cumsum(probabilities[order]) - probabilities[order]
    assert np.min(np.abs(before - p)) > 1e-3  # no token sits at the boundary
    return order[before < p]


def chi_square_critical_value(degrees, z=4.265):
    """Wilson-Hilferty approximation of the chi-square quantile at 1 - 1e-5 (z is that normal quantile)."""
    h = 2.0 / (9.0 * degrees)
    return degrees * (1.0 - h + z * np.sqrt(h)) ** 3


def assert_draws_fit(draws, allowed, probabilities):
    """Every draw lies in ``allowed`` and the counts fit ``probabilities`` renormalized over it."""
    draws = np.asarray(draws)
    outside = sorted(set(draws.tolist()) - set(np.asarray(allowed).tolist()))
    assert not outside, f"drew {outside}, outside the allowed set {sorted(np.asarray(allowed).tolist())}"
    expected = np.zeros_like(probabilities)
    expected[allowed] = probabilities[allowed] / probabilities[allowed].sum()
    expected *= len(draws)
    observed = np.bincount(draws, minlength=len(probabilities)).astype("float64")
    # One bin per token expected >= 5 times; the rest pooled (into the last bin if still < 5).
    order = np.argsort(-expected)
    big = [t for t in order if expected[t] >= 5]
    small = [t for t in order if 0 < expected[t] < 5]
    bins_expected = [expected[t] for t in big]
    bins_observed = [observed[t] for t in big]
    if small:
        if expected[small].sum() >= 5 or not big:
            bins_expected.append(expected[small].sum())
            bins_observed.append(observed[small].sum())
        else:
            bins_expected[-1] += expected[small].sum()
            bins_observed[-1] += observed[small].sum()
    bins_expected, bins_observed = np.array(bins_expected), np.array(bins_observed)
    assert len(bins_expected) >= 3, "too few bins for a meaningful test"
    statistic = float(np.sum((bins_observed - bins_expected) ** 2 / bins_expected))
    critical = chi_square_critical_value(len(bins_expected) - 1)
    assert statistic < critical, (statistic, critical, bins_observed.tolist(), np.round(bins_expected, 1).tolist())


def draw_one_token(lm, sampler):
    generated = lm.generate([PROMPT] * DRAWS, max_new_tokens=1, sampler=sampler, jit_compile=False)
    assert all(row[:-1] == PROMPT for row in generated)
    return [row[-1] for row in generated]


@pytest.fixture(scope="module")
def logits(backbone):
    """Reference next-token logits (as log-probabilities) of PROMPT, from the whole sequence."""
    return full_sequence_log_probs(backbone, [PROMPT])[0]


def test_top_k_draws_lie_in_the_top_k_and_follow_the_renormalized_softmax(backbone, logits):
    probabilities = softmax(logits, TEMPERATURE)
    top_5 = top_k_set(probabilities, 5)
    assert probabilities[top_5].sum() < 0.6  # the filter matters: ~200 of 512 draws would fall outside
    sampler = keras_hub.samplers.TopKSampler(k=5, temperature=TEMPERATURE, seed=11)
    assert_draws_fit(draw_one_token(CausalLM(backbone), sampler), top_5, probabilities)


def test_top_p_draws_lie_in_the_nucleus_and_follow_the_renormalized_softmax(backbone, logits):
    probabilities = softmax(logits, TEMPERATURE)
    core = nucleus(probabilities, 0.5)
    assert 3 <= len(core) <= 10 and probabilities[core].sum() < 0.6
    sampler = keras_hub.samplers.TopPSampler(p=0.5, temperature=TEMPERATURE, seed=12)
    assert_draws_fit(draw_one_token(CausalLM(backbone), sampler), core, probabilities)


def test_temperature_draws_follow_the_tempered_softmax(backbone, logits):
    probabilities = softmax(logits, TEMPERATURE)
    everything = np.arange(len(probabilities))
    sampler = keras_hub.samplers.RandomSampler(temperature=TEMPERATURE, seed=13)
    draws = draw_one_token(CausalLM(backbone), sampler)
    assert_draws_fit(draws, everything, probabilities)
    # The same draws do not fit the distribution at temperature 1: the test sees the temperature.
    with pytest.raises(AssertionError):
        assert_draws_fit(draws, everything, softmax(logits, 1.0))


def brute_force_beam_search(backbone, prompt, steps, width):
    """Beam search by recomputing every beam's whole sequence at every step; returns the best sequence."""
    beams = [(list(prompt), 0.0)]
    for _ in range(steps):
        log_probs = full_sequence_log_probs(backbone, [sequence for sequence, _ in beams])
        candidates = [(score + log_probs[b, token], b, token)
                      for b, (_, score) in enumerate(beams) for token in range(log_probs.shape[1])]
        candidates.sort(key=lambda c: -c[0])
        beams = [(beams[b][0] + [token], score) for score, b, token in candidates[:width]]
    beams.sort(key=lambda beam: -beam[1])
    assert len(beams) == 1 or beams[0][1] - beams[1][1] > 1e-4  # a clear winner
    return beams[0][0]


def test_beam_search_of_width_4_equals_a_brute_force_search(backbone):
    lm = CausalLM(backbone)
    prompts = [[5, 17, 42], [99, 3, 150], [200, 1, 7]]
    steps = 5
    expected = [brute_force_beam_search(backbone, prompt, steps, width=4) for prompt in prompts]
    # Beam search finds sequences greedy decoding misses (else this test could not tell them apart).
    assert [brute_force_beam_search(backbone, prompt, steps, width=1) for prompt in prompts] != expected
    beam = keras_hub.samplers.BeamSampler(num_beams=4)
    assert lm.generate(prompts, max_new_tokens=steps, sampler=beam, jit_compile=False) == expected
