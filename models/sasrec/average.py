"""Polyak averaging of SASRec's weights (`SasrecConfig.ema_decay`)."""
from __future__ import annotations

import contextlib

import tensorflow as tf


class WeightAverage:
    """Exponential moving average of trainable weights (Polyak averaging): after every step
    `shadow = decay * shadow + (1 - decay) * weights`. Training goes on with the raw weights; the
    average is swapped in only to be validated (and kept, when it validates better)."""

    def __init__(self, variables, decay: float):
        self.variables, self.decay = list(variables), decay
        self.shadow = [tf.Variable(v, trainable=False, name="ema_" + v.name.replace("/", "_").replace(":", "_"))
                       for v in self.variables]
        self._update = tf.function(self._update_fn)

    def _update_fn(self):
        for s, v in zip(self.shadow, self.variables):
            s.assign(self.decay * s + (1.0 - self.decay) * tf.convert_to_tensor(v))

    def update(self) -> None:
        self._update()

    @contextlib.contextmanager
    def applied(self):
        """Inside the block the model holds the averaged weights; the raw ones come back after it."""
        raw = [v.numpy() for v in self.variables]
        for s, v in zip(self.shadow, self.variables):
            v.assign(s)
        try:
            yield
        finally:
            for v, r in zip(self.variables, raw):
                v.assign(r)
