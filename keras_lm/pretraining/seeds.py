"""Seeds for the independent random stages of one pipeline, derived from a single integer seed."""
from __future__ import annotations

import tensorflow as tf


def derive_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent, reproducible int seeds (in ``[0, 2**31 - 1)``) derived from ``seed``.

    Example:
        >>> a, b = derive_seeds(7, 2)
        >>> a != b and derive_seeds(7, 2) == [a, b]
        True
    """
    split = tf.random.experimental.stateless_split([int(seed), 0x5EED], count)[:, 0].numpy()
    return [int(value) % (2**31 - 1) for value in split]
