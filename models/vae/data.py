"""The user x item matrix VAE-CF and EASE learn from: event weights, the strongest event per (user, item),
as a scipy matrix or as a cornac Dataset whose indices are the catalog's."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recdata.dataset import Interactions
from recdata.schema import EventWeights


def to_cornac(inter: Interactions, weights: EventWeights):
    """Our encoded interactions -> a cornac Dataset whose user/item indices ARE our dense indices
    (identity maps), so cornac's matrix rows/columns line up with the catalog. Ratings are the
    event weights (max over repeated (user, item) pairs)."""
    from cornac.data import Dataset

    m = interaction_matrix(inter, weights).tocoo()
    return Dataset(
        num_users=inter.n_users, num_items=inter.n_items,
        uid_map={u: u for u in range(inter.n_users)}, iid_map={i: i for i in range(inter.n_items)},
        uir_tuple=(m.row.astype(np.int64), m.col.astype(np.int64), m.data.astype(np.float64)),
    )


def interaction_matrix(inter: Interactions, weights: EventWeights) -> sp.csr_matrix:
    """User x item matrix of event weights, the strongest event per (user, item)."""
    f = inter.frame
    w = weights.of(f["event"].to_numpy())
    m = sp.coo_matrix((w, (f["uidx"].to_numpy(), f["iidx"].to_numpy())), shape=(inter.n_users, inter.n_items))
    return _max_duplicates(m)


def _max_duplicates(m: sp.coo_matrix) -> sp.csr_matrix:
    order = np.lexsort((-m.data, m.col, m.row))
    r, c, d = m.row[order], m.col[order], m.data[order]
    first = np.ones(len(r), bool)
    first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    return sp.csr_matrix((d[first].astype(np.float32), (r[first], c[first])), shape=m.shape)
