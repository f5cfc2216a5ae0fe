"""Model inputs shared by the Keras engine and the TF-free LiteRT scorer."""
from __future__ import annotations

import numpy as np


def pad_histories(items: list, events: list, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense item indices -> left-padded shifted ids [B, max_len] int32 (0 = pad) and event codes.
    The newest `max_len` items are kept; ids shift by one so that 0 is padding."""
    out_i = np.zeros((len(items), max_len), np.int32)
    out_e = np.zeros((len(items), max_len), np.int32)
    for b, (s, e) in enumerate(zip(items, events)):
        s = np.asarray(s)[-max_len:]
        if len(s):
            out_i[b, -len(s):] = s + 1
            out_e[b, -len(s):] = np.asarray(e)[-max_len:]
    return out_i, out_e
