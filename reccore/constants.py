"""Names and codes every layer shares; declared once here.

Engine roles are the four retrieval roles of the serving graph (and of the simulator's candidate
sources); the decision engine re-ranks their union and is not one of them. Event codes are the
integers events carry everywhere: loaders, engines, the simulator's history, the serving API.
"""
from __future__ import annotations

ENGINE_ROLES: tuple[str, ...] = ("sequence", "discovery", "similarity", "popularity")

VIEW, CART, PURCHASE = 0, 1, 2
EVENT_CODES: dict[str, int] = {"view": VIEW, "cart": CART, "purchase": PURCHASE}

VALIDATION_MARGIN = 1.3
"""A training budget keeps aside this many times what the next validation is expected to take (the last
one's time, or an estimate before any): a validation's time moves with what runs beside it. Measured in the
10^7-event pipeline, beside SASRec: the VAE's estimate 68 s, the validation itself 82 s (1.2x)."""
