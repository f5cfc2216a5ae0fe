"""Business filters over a catalog: the one function every engine and the serving path apply.

    allowed_mask(catalog, category="electronics", min_price=10, max_price=200) -> bool [n_items] or None

- category: case-insensitive; matches the `category` column exactly or as a parent of a dotted path
  ("electronics" matches "electronics.smartphone"), and any of the `genres` ("Animation|Comedy"), so the
  same word filters a shop's category tree and a film's genres.
- price: items with an unknown price never pass a price filter.
- a filter on information the catalog does not have (no category/genres, no price column) matches
  nothing: an answer never claims an item passes a filter it cannot be checked against.
Masks are cached per catalog (filters repeat across requests), and returned read-only.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np
import pandas as pd

_CACHE_SIZE = 256
_cache: "weakref.WeakKeyDictionary[object, OrderedDict]" = weakref.WeakKeyDictionary()


def category_mask(items: pd.DataFrame, category: str) -> np.ndarray:
    """Bool [len(items)]: rows whose category (or a parent of it) or one of whose genres is `category`."""
    c = str(category).strip().lower()
    mask = np.zeros(len(items), bool)
    if "category" in items:
        cats = items["category"].astype("string").fillna("").str.lower()
        mask |= ((cats == c) | cats.str.startswith(c + ".")).to_numpy(bool)
    if "genres" in items:
        genres = items["genres"].astype("string").fillna("").str.lower().str.split("|")
        mask |= genres.apply(lambda gs: c in gs).to_numpy(bool)
    return mask


def price_mask(items: pd.DataFrame, min_price: float | None, max_price: float | None) -> np.ndarray:
    """Bool [len(items)]: rows with a known price within [min_price, max_price]."""
    if "price" not in items:
        return np.zeros(len(items), bool)
    price = pd.to_numeric(items["price"], errors="coerce").to_numpy(np.float64)
    mask = np.isfinite(price)
    if min_price is not None:
        mask &= price >= min_price
    if max_price is not None:
        mask &= price <= max_price
    return mask


def allowed_mask(catalog, category: str | None = None, min_price: float | None = None,
                 max_price: float | None = None) -> np.ndarray | None:
    """Bool [catalog.n_items] of the items passing every filter given; None when no filter is given.
    `catalog`: anything with an `items` table in item-index order (recdata.dataset.Catalog)."""
    if category is None and min_price is None and max_price is None:
        return None
    key = (None if category is None else str(category).strip().lower(), min_price, max_price)
    per_catalog = _cache.setdefault(catalog, OrderedDict())
    if key in per_catalog:
        per_catalog.move_to_end(key)
        return per_catalog[key]
    items = catalog.items
    mask = np.ones(len(items), bool)
    if category is not None:
        mask &= category_mask(items, category)
    if min_price is not None or max_price is not None:
        mask &= price_mask(items, min_price, max_price)
    mask.flags.writeable = False
    per_catalog[key] = mask
    if len(per_catalog) > _CACHE_SIZE:
        per_catalog.popitem(last=False)
    return mask
