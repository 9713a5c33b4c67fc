"""InverseSquareRootWarmup: linear rise to the peak at `warmup`, then proportional to step ** -0.5."""
import math

import keras
import pytest

from keras_lm.training.schedules import InverseSquareRootWarmup


def _rate(schedule, step) -> float:
    return float(schedule(step))


def test_linear_rise_to_the_peak_at_warmup():
    schedule = InverseSquareRootWarmup(2e-3, warmup=400)
    assert _rate(schedule, 0) == 0.0
    for step in (1, 100, 200, 399):
        assert _rate(schedule, step) == pytest.approx(2e-3 * step / 400, rel=1e-6)
    assert _rate(schedule, 400) == pytest.approx(2e-3, rel=1e-6)
    rates = [_rate(schedule, step) for step in range(0, 1200, 7)]
    assert max(rates) <= 2e-3 * (1 + 1e-6)  # never above the peak


def test_inverse_square_root_decay_after_warmup():
    schedule = InverseSquareRootWarmup(2e-3, warmup=400)
    for step in (401, 800, 1600, 6400, 100_000):
        assert _rate(schedule, step) == pytest.approx(2e-3 * math.sqrt(400 / step), rel=1e-5)
    assert _rate(schedule, 1600) == pytest.approx(_rate(schedule, 400) / 2, rel=1e-5)  # x4 steps, /2 rate


def test_the_papers_form_from_hidden_dim():
    # "Attention Is All You Need": lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    schedule = InverseSquareRootWarmup.from_hidden_dim(512, warmup=4000)
    for step in (1, 1000, 4000, 4001, 20_000):
        expected = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert _rate(schedule, step) == pytest.approx(expected, rel=1e-5)


def test_config_round_trip_and_use_in_an_optimizer():
    schedule = InverseSquareRootWarmup(5e-4, warmup=30)
    assert schedule.get_config() == {"peak": 5e-4, "warmup": 30}
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(copy, InverseSquareRootWarmup)
    assert [_rate(copy, s) for s in (0, 15, 30, 120)] == [_rate(schedule, s) for s in (0, 15, 30, 120)]
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    restored = keras.optimizers.Adam.from_config(optimizer.get_config())
    assert isinstance(restored._learning_rate, InverseSquareRootWarmup)
    assert restored._learning_rate.get_config() == schedule.get_config()


@pytest.mark.parametrize("arguments, message", [
    ({"peak": 0.0, "warmup": 10}, "peak"),
    ({"peak": -1e-3, "warmup": 10}, "peak"),
    ({"peak": 1e-3, "warmup": 0}, "warmup"),
    ({"peak": 1e-3, "warmup": 2.5}, "warmup"),
])
def test_bad_arguments_are_one_clear_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        InverseSquareRootWarmup(**arguments)
