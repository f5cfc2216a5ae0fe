"""The generator's settings and the structure it plants (see the package docstring for why)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EVENT_TYPE_NAMES = np.array(["view", "cart", "purchase"], dtype=object)
COLUMNS = ("event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
           "user_id", "user_session")

# Accessory categories that follow a purchase; earlier successors are likelier (weights 1, 1/2, 1/3).
CHAINS: dict[str, tuple[str, ...]] = {
    "electronics.smartphone": ("accessories.phone_case", "electronics.charger", "electronics.audio.headphone"),
    "accessories.phone_case": ("electronics.charger", "electronics.audio.headphone"),
    "electronics.charger": ("electronics.audio.headphone", "electronics.clocks"),
    "electronics.tablet": ("accessories.phone_case", "electronics.charger"),
    "computers.notebook": ("computers.peripherals.mouse", "accessories.bag", "computers.peripherals.keyboard"),
    "computers.peripherals.mouse": ("computers.peripherals.keyboard",),
    "computers.desktop": ("computers.peripherals.monitor", "computers.peripherals.keyboard",
                          "computers.peripherals.mouse"),
    "computers.peripherals.monitor": ("computers.peripherals.keyboard", "computers.peripherals.mouse"),
    "computers.components.motherboard": ("computers.components.cpu", "computers.components.memory"),
    "computers.components.cpu": ("computers.components.cooler", "computers.components.memory"),
    "computers.components.videocards": ("computers.components.power_supply",),
    "computers.peripherals.printer": ("stationery.cartrige",),
    "electronics.video.tv": ("electronics.audio.subwoofer", "electronics.audio.acoustic"),
    "electronics.camera.photo": ("accessories.bag",),
    "kids.carriage": ("kids.toys", "kids.fmcg.diapers"),
    "furniture.bedroom.bed": ("furniture.bedroom.pillow", "furniture.bedroom.blanket"),
    "furniture.living_room.sofa": ("furniture.living_room.chair", "furniture.living_room.cabinet"),
    "auto.accessories.player": ("auto.accessories.videoregister", "auto.accessories.alarm"),
    "appliances.kitchen.oven": ("appliances.kitchen.hood", "appliances.kitchen.hob"),
    "appliances.iron": ("appliances.ironing_board",),
    "construction.tools.drill": ("construction.tools.light",),
    "apparel.shoes": ("apparel.sock",),
}
# Categories the chains need that the 3-hour sample lacks: a small base share, their own prices
# (accessories are cheap), and the brand mix of the category they accessorize.
PLANTED_CATEGORIES: dict[str, dict] = {
    "accessories.phone_case": {"event_share": 0.004, "median_price": 12.0, "sigma": 0.5,
                               "brands_like": "electronics.smartphone"},
    "electronics.charger": {"event_share": 0.004, "median_price": 18.0, "sigma": 0.5,
                            "brands_like": "electronics.smartphone"},
}
MIN_ITEMS_PER_CATEGORY = 4
SESSION_TIMEOUT_S = 1800
"""Minimum time between the end of a user's session and the start of their next."""


@dataclass
class SyntheticConfig:
    """Size, seed and the strength of each planted effect (0 switches an effect off)."""

    n_users: int = 5000
    """Shoppers to generate."""
    n_items: int = 3000
    """Catalog size (every category gets at least 4 items)."""
    n_days: int = 30
    """Length of the window; sessions start uniformly in it."""
    seed: int = 0
    """Everything follows from it: same config, same bytes."""
    start: str = "2019-10-01"
    """First day of the window (UTC), as in the REES46 October file."""
    sessions_per_user: float = 8.0
    """Mean sessions per user (2 + Poisson); x ~3.4 events per session gives tens of events per user."""
    interests_per_user: int = 3
    """Dominant categories per user, drawn by the calibrated category shares."""
    explore: float = 0.1
    """Share of non-chain sessions in a category drawn from the global shares instead of the user's."""
    category_persistence: float = 0.3
    """Probability that a session returns to the previous session's category."""
    chain_strength: float = 0.7
    """Probability that a session after a purchase goes to an accessory category of it."""
    chain_span: int = 2
    """How many sessions after a purchase the chain pull lasts."""
    compat_strength: float = 0.6
    """In a chain session, probability that a newly viewed item is one compatible with the bought one."""
    compat_items: int = 3
    """Compatible accessories per item and accessory category (same brand where it has any)."""
    brand_loyalty: float = 0.6
    """Probability that a newly viewed item is of the user's personal brand for its category."""
    brand_loyalty_after_purchase: float = 0.9
    """The same once the user bought that brand in the category (or in the one it accessorizes)."""
    interest_drift: float = 0.8
    """Weight of the late interests at the end of the window (linear in time; 0 = static interests)."""
    users_per_chunk: int = 20000
    """Users generated together; memory follows this, not n_users (part of the seed's meaning)."""
    calibration: str | None = None
    """Calibration JSON; None uses the committed recdata/calibration/rees46_oct2019_head.json."""

    def validate(self) -> None:
        for name in ("n_users", "n_items", "n_days", "users_per_chunk", "interests_per_user", "compat_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("explore", "category_persistence", "chain_strength", "compat_strength", "brand_loyalty",
                     "brand_loyalty_after_purchase", "interest_drift"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} is a probability: it must lie in [0, 1], got {v}")
        if self.sessions_per_user < 2:
            raise ValueError(f"sessions_per_user must be >= 2 (got {self.sessions_per_user})")
        if self.n_users > 56_000_000 or self.n_items > 59_000_000:
            raise ValueError("n_users <= 56M and n_items <= 59M (the REES46 id ranges)")
