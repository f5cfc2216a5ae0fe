"""recdata.csvrows: the fast REES46 time parser reads every row as pandas' own strptime does."""
import numpy as np
import pandas as pd

from recdata.csvrows import REES46_TIME, rees46_seconds

# Rows Arrow's parser alone would read differently from pandas, and rows both read.
EDGES = [
    "2019-10-01 00:00:07 UTC", "2019-10-01 0:0:7 UTC", "2019-1-1 00:00:07 UTC", " 2019-10-01 00:00:07 UTC",
    "2019-10-01 00:00:07 UTC ", "2019-10-01 00:00:07", "2019-10-01T00:00:07 UTC", "", "nan",
    "2019-02-30 00:00:07 UTC", "2019-02-29 10:00:00 UTC", "2020-02-29 10:00:00 UTC", "2019-13-01 00:00:00 UTC",
    "2019-10-01 24:00:00 UTC", "2019-10-01 23:60:00 UTC", "2019-12-31 23:59:60 UTC", "0000-01-01 00:00:00 UTC",
    "1500-01-01 00:00:00 UTC", "1969-12-31 23:59:59 UTC", "2199-12-31 23:59:59 UTC", "2300-01-01 00:00:00 UTC",
    "9999-12-31 23:59:59 UTC", "\uff12019-10-01 00:00:07 UTC",
]


def test_rees46_seconds_reads_every_row_as_pandas_does():
    rng = np.random.default_rng(0)
    stamps = pd.to_datetime(rng.integers(1.5e9, 1.6e9, 2000), unit="s").strftime(REES46_TIME).tolist()
    s = pd.Series(EDGES + stamps, index=np.arange(len(EDGES) + 2000) + 5)  # not a 0-based index
    ref = pd.to_datetime(s, format=REES46_TIME, errors="coerce", utc=True)
    for series in (s, s.astype(object)):
        seconds, bad = rees46_seconds(series)
        np.testing.assert_array_equal(bad, ref.isna().to_numpy())
        np.testing.assert_array_equal(seconds[~bad], ref[ref.notna()].dt.as_unit("s").astype("int64").to_numpy())
    assert 8 <= bad[:len(EDGES)].sum() < len(EDGES) and not bad[len(EDGES):].any()  # both kinds are there
