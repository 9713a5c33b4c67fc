"""Learning-rate schedules."""
import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_lm")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup` steps, then linear decay to `end` at `total`.

    This is the schedule BERT and most encoder fine-tuning recipes use. With `total=None` the
    rate stays at `peak` after warmup.

    Example:
        >>> schedule = WarmupLinearDecay(1e-3, warmup=10, total=100)
        >>> [round(float(schedule(step)), 6) for step in (5, 10, 100)]
        [0.0005, 0.001, 0.0]
    """

    def __init__(self, peak: float, warmup: int, total: int | None = None, end: float = 0.0):
        if total is not None and total <= 0:
            raise ValueError(f"`total` steps must be positive, got {total}.")
        if warmup < 0 or (total is not None and warmup > total):
            raise ValueError(f"`warmup` must be between 0 and total={total}, got {warmup}.")
        self.peak = float(peak)
        self.warmup = int(warmup)
        self.total = None if total is None else int(total)
        self.end = float(end)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = self.peak * step / max(self.warmup, 1)
        if self.total is None:
            decayed = ops.full_like(step, self.peak)
        else:
            decay_span = max(self.total - self.warmup, 1)
            progress = ops.clip((step - self.warmup) / decay_span, 0.0, 1.0)
            decayed = self.peak + (self.end - self.peak) * progress
        return ops.where(step < self.warmup, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total, "end": self.end}


@keras.saving.register_keras_serializable(package="keras_lm")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup` steps, then a half cosine down to `end` at `total`.

    After warmup the rate is `end + (peak - end) * (1 + cos(pi * progress)) / 2`, with `progress`
    going from 0 at `warmup` to 1 at `total`; it stays at `end` afterwards.

    Example:
        >>> schedule = WarmupCosineDecay(1e-3, warmup=10, total=110)
        >>> [round(float(schedule(step)), 6) for step in (5, 10, 60, 110)]
        [0.0005, 0.001, 0.0005, 0.0]
    """

    def __init__(self, peak: float, warmup: int, total: int, end: float = 0.0):
        if total is None or total <= 0:
            raise ValueError(f"`total` steps must be positive, got {total}.")
        if warmup < 0 or warmup > total:
            raise ValueError(f"`warmup` must be between 0 and total={total}, got {warmup}.")
        self.peak = float(peak)
        self.warmup = int(warmup)
        self.total = int(total)
        self.end = float(end)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = self.peak * step / max(self.warmup, 1)
        progress = ops.clip((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        decayed = self.end + (self.peak - self.end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total, "end": self.end}


@keras.saving.register_keras_serializable(package="keras_lm")
class InverseSquareRootWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup` steps, then decay proportional to `step ** -0.5`.

    The schedule of "Attention Is All You Need": `peak * min(step / warmup, sqrt(warmup / step))`,
    which is the paper's `hidden_dim ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)` with
    `peak = (hidden_dim * warmup) ** -0.5` (see `from_hidden_dim`). The rate is `peak` at
    `step == warmup` and half of it at `4 * warmup`.

    Example:
        >>> schedule = InverseSquareRootWarmup(1e-3, warmup=100)
        >>> [round(float(schedule(step)), 6) for step in (50, 100, 400)]
        [0.0005, 0.001, 0.0005]
    """

    def __init__(self, peak: float, warmup: int):
        if not peak > 0:
            raise ValueError(f"`peak` learning rate must be positive, got {peak}.")
        if int(warmup) != warmup or warmup < 1:
            raise ValueError(f"`warmup` must be a whole number of steps >= 1, got {warmup}.")
        self.peak = float(peak)
        self.warmup = int(warmup)

    @classmethod
    def from_hidden_dim(cls, hidden_dim: int, warmup: int, scale: float = 1.0) -> "InverseSquareRootWarmup":
        """The paper's form: `scale * hidden_dim ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)`."""
        return cls(scale * (hidden_dim * warmup) ** -0.5, warmup)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rise = step / self.warmup
        decay = ops.sqrt(self.warmup / ops.maximum(step, 1.0))
        return self.peak * ops.minimum(rise, decay)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup}
