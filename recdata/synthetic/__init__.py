"""The embedded default data: a synthetic e-commerce event log in the REES46 schema.

    python -m recdata.synthetic --users 5000 --items 3000 --days 30 --seed 0 --out synthetic.csv

Columns and formats are those of the REES46 "eCommerce behavior data from multi category store"
(`event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session`,
event_time like `2019-10-01 00:00:00 UTC`), so every loader, engine and test that reads REES46 reads
this too. Output is a pure function of the config: same seed and sizes, same bytes.

Calibrated from the REES46 sample (`recdata/calibration/rees46_oct2019_head.json`, made by
`python -m recdata.calibrate`): category shares and brand mix per category, log-normal prices per
top-level category, Zipf item popularity, session lengths, gaps between events, repeat views, and the
per-session funnel view -> cart -> purchase (outcome shares and items per converting session).

Planted structure -- what a good model can learn and a popularity ranking cannot:
1. Category chains (`CHAINS`): after a purchase in category A, the shopper's next `chain_span`
   sessions move, with probability `chain_strength`, to A's accessory categories (smartphone ->
   phone case -> charger / headphones; notebook -> mouse -> keyboard ...); the items looked at are
   often (`compat_strength`) the few accessories compatible with the bought item (mostly its brand).
   Reason: this is why "people who bought X next buy Y" exists; only a model of the sequence
   (what was bought last) can predict it -- it is invisible in global counts.
2. Brand loyalty: each shopper has a personal brand per category and picks it with probability
   `brand_loyalty`, raised to `brand_loyalty_after_purchase` once they bought that brand there (and in
   the accessory categories of that purchase). Reason: personal taste that differs between users.
3. Interest drift: each shopper has a few dominant categories at the start and a different set at
   the end of the window; their mix moves linearly in time (`interest_drift`). Reason: recent history
   should weigh more than old history; a static profile is wrong late in the window.
Besides: shoppers come back to the category of their previous session (`category_persistence`), as
real ones do, and sometimes browse anywhere (`explore`).

Deliberate deviation from the sample: users have tens of events (`sessions_per_user` sessions each)
instead of the sample's median 2, which comes from a 3-hour window, so that sequence models have
histories to learn from. Time of day and the gaps between a user's sessions are not calibrated (the
sample spans under 3 hours): session starts are uniform over `n_days`, at least 30 minutes apart.
A session starts in one category and switches to another of the user's interests at the calibrated
rate of category changes between consecutive events.

Modules: config (SyntheticConfig, the planted chains), catalog (categories, items, accessories),
shoppers (sessions, step by step), writer (a frame or a CSV in time order), measure (the planted
structure read back from the output alone), cli (the command line).
"""
from recdata.synthetic.cli import main
from recdata.synthetic.config import SyntheticConfig
from recdata.synthetic.measure import measure_structure
from recdata.synthetic.writer import generate, write_csv

__all__ = ["SyntheticConfig", "generate", "main", "measure_structure", "write_csv"]
