"""The one business-filter function: category paths and genres, prices, missing columns."""
import numpy as np
import pandas as pd

from recdata.dataset import Catalog
from recdata.filters import allowed_mask


def _catalog(items: pd.DataFrame) -> Catalog:
    return Catalog(np.array([1]), items["item"].to_numpy(), items)


SHOP = _catalog(pd.DataFrame({
    "item": [1, 2, 3, 4],
    "category": ["electronics.smartphone", "Electronics", "electronicsx", None],
    "price": [100.0, np.nan, 20.0, 5.0],
}))
FILMS = _catalog(pd.DataFrame({"item": [1, 2, 3], "category": ["Comedy", "Drama", "Animation"],
                               "genres": ["Comedy|Romance", "Drama|Comedy", "Animation|Children's"]}))


def test_category_matches_dotted_parents_case_insensitively():
    np.testing.assert_array_equal(allowed_mask(SHOP, category="electronics"), [True, True, False, False])
    np.testing.assert_array_equal(allowed_mask(SHOP, category="ELECTRONICS.smartphone"), [True, False, False, False])


def test_category_matches_any_genre():
    np.testing.assert_array_equal(allowed_mask(FILMS, category="comedy"), [True, True, False])


def test_price_bounds_and_unknown_prices():
    np.testing.assert_array_equal(allowed_mask(SHOP, min_price=10), [True, False, True, False])
    np.testing.assert_array_equal(allowed_mask(SHOP, category="electronics", max_price=50), [False] * 4)


def test_no_filter_is_none_and_missing_columns_match_nothing():
    assert allowed_mask(SHOP) is None
    assert not allowed_mask(FILMS, min_price=1).any()
    bare = _catalog(pd.DataFrame({"item": [1, 2]}))
    assert not allowed_mask(bare, category="comedy").any()


def test_masks_are_cached_and_read_only():
    a = allowed_mask(SHOP, category="electronics")
    assert allowed_mask(SHOP, category=" Electronics ") is a
    assert not a.flags.writeable
