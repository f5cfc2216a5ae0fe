"""The served-event log (REES46 rows, fsync'd batches, one file per writer) and several inputs read as one."""
import time

import pandas as pd

from recdata.dataset import prepare
from recdata.eventlog import ServedEventLog, load_many, recent_sessions, rees46_row
from recdata.loaders import load_rees46

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
BASE = [
    "2019-10-01 00:00:00 UTC,view,1,10,electronics.phone,apple,100.0,7,s1",
    "2019-10-01 00:00:01 UTC,view,2,10,electronics.phone,apple,50.0,7,s1",
    "2019-10-01 00:00:02 UTC,cart,2,10,electronics.phone,apple,50.0,7,s1",
    "2019-10-01 00:00:03 UTC,view,3,11,appliances.kettle,bosch,20.0,8,s2",
    "2019-10-01 00:00:04 UTC,view,1,10,electronics.phone,apple,100.0,8,s2",
    "2019-10-01 00:00:05 UTC,view,4,11,appliances.kettle,bosch,30.0,8,s2",
    "2019-10-01 00:00:06 UTC,view,4,11,appliances.kettle,bosch,30.0,7,s1",
]


def _base(tmp_path):
    p = tmp_path / "base.csv"
    p.write_text("\n".join([HEADER, *BASE]) + "\n")
    return p


def test_served_log_is_rees46_and_reads_back(tmp_path):
    log = ServedEventLog(tmp_path / "events")
    t = time.time()
    log.append([rees46_row(t, "view", 3, 7, "7", {"price": 20.0, "category": "appliances.kettle",
                                                     "category_id": 11, "brand": "bosch"}),
                rees46_row(t, "purchase", 4, 7, "7", {"price": 30.0})])
    log.append([rees46_row(t, "view", 1, None, "sess-a")])  # no user id, no price: kept, counted on load
    log.close()
    served = load_rees46(tmp_path / "events")
    assert len(served.events) == 2 and served.bad_rows.total == 1  # no user id (and no price)
    assert served.events["event"].tolist() == [0, 2]
    sessions = recent_sessions(tmp_path / "events", since=t - 5)
    assert [(s, i, e) for s, _, i, e in sessions] == [("7", 3, "view"), ("7", 4, "purchase"), ("sess-a", 1, "view")]
    assert abs(sessions[0][1] - t) < 2  # unix seconds, whatever resolution pandas parses times to
    assert recent_sessions(tmp_path / "events", since=t + 5) == []
    assert recent_sessions(tmp_path / "nowhere", since=0) == []


def test_several_inputs_count_each_event_once(tmp_path):
    base = _base(tmp_path)
    served = tmp_path / "served.csv"
    # Two events the base already holds (a replayed log), one new one without catalog details.
    served.write_text("\n".join([HEADER, BASE[0], BASE[5], "2019-10-02 00:00:00 UTC,purchase,4,,,,30.0,7,7"]) + "\n")
    log = load_many("rees46", [base, served])
    assert len(log.events) == len(BASE) + 1
    assert log.rows_read == len(log.events) + log.bad_rows.total
    assert sum(n for r, n in log.bad_rows.counts.items() if r.startswith("duplicate")) == 2
    items = log.items.set_index("item")
    assert items.loc[4, "category"] == "appliances.kettle" and items.loc[4, "brand"] == "bosch"  # not blanked

    a = prepare("rees46", [base, served], cache_dir=tmp_path / "cache")
    b = prepare("rees46", [base, served], cache_dir=tmp_path / "cache2")
    assert a.meta["fingerprint"] == b.meta["fingerprint"]
    pd.testing.assert_frame_equal(a.interactions.frame, b.interactions.frame)
    assert prepare("rees46", base).meta["fingerprint"] != a.meta["fingerprint"]
    # The served purchase of item 4 by user 7 is a funnel step over the base view: one more row.
    assert len(a.interactions) == len(prepare("rees46", base).interactions) + 1
