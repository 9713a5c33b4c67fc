"""Learning-rate schedules."""
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
