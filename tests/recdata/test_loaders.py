import csv

import numpy as np
import pytest

from support import shared_data
from recdata.loaders import load, load_rees46, load_sasrec, load_table
from recdata.schema import DataError, EventType

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_rees46_bad_rows_are_counted_with_line_numbers(tmp_path):
    rows = [
        HEADER,
        "2019-10-01 00:00:00 UTC,view,1,10,electronics.smartphone,apple,100.0,7,s1",  # line 2 ok
        "2019-10-01 00:00:01 UTC,wishlist,1,10,electronics.smartphone,apple,100.0,7,s1",  # 3 unknown event
        "2019-10-01 00:00:02 UTC,cart,,10,electronics.smartphone,apple,100.0,7,s1",  # 4 missing product
        "not a time,view,2,10,,,5.0,7,s1",  # 5 bad time
        "2019-10-01 00:00:03 UTC,view,2,10,,,5.0,7,s1,EXTRA",  # 6 too many fields
        "2019-10-01 00:00:04 UTC,purchase,1,10,electronics.smartphone,apple,100.0,7,s1",  # 7 ok
        "",  # 8 blank line
        "2019-10-01 00:00:05 UTC,view,3,11,appliances.kettle,bosch,abc,8,s2",  # 9 bad price
        "2019-10-01 00:00:06 UTC,view,3,11,appliances.kettle,bosch,20.5,x8,s2",  # 10 bad user
        "2019-10-01 00:00:07 UTC,view,3,11,appliances.kettle,bosch,20.5,8,s2",  # 11 ok
    ]
    p = write(tmp_path, "ev.csv", "\n".join(rows) + "\n")
    log = load_rees46(p, chunksize=3)  # several chunks: line numbers must stay absolute
    rep = log.bad_rows
    assert rep.lines == {
        "unknown event_type": [3],
        "missing or bad product_id": [4],
        "missing or bad event_time": [5, 8],
        "wrong number of fields": [6],
        "missing or bad price": [9],
        "missing or bad user_id": [10],
    }
    assert len(log.events) == 3 and rep.total == 7
    assert log.rows_read == len(log.events) + rep.total  # nothing lost without a count
    assert log.events["event"].tolist() == [EventType.VIEW, EventType.PURCHASE, EventType.VIEW]
    assert log.events["weight"].tolist() == [1.0, 5.0, 1.0]
    items = log.items.set_index("item")
    assert items.loc[3, "category"] == "appliances.kettle" and items.loc[3, "price"] == pytest.approx(20.5)
    assert "kettle" in items.loc[3, "title"]


def test_missing_column_names_the_column_and_the_fix(tmp_path):
    p = write(tmp_path, "ev.csv", HEADER.replace(",brand", "") + "\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['brand'\].*--format csv"):
        load_rees46(p)


def test_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load("rees46", tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unknown format"):
        load("json", tmp_path)


def test_rees46_sample_stats_match_the_file():
    path = shared_data("rees46-oct2019-head")
    log = load("rees46", path)
    # Independent count with the csv module.
    with open(next(path.glob("*.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    assert log.rows_read == len(rows) == 17435
    assert log.bad_rows.total == 0
    s = log.stats()
    assert s["users"] == len({r["user_id"] for r in rows})
    assert s["items"] == len({r["product_id"] for r in rows})
    for name in ("view", "cart", "purchase"):
        assert s["event_types"][name] == sum(r["event_type"] == name for r in rows)


def test_ml1m_loads_to_published_counts():
    log = load("sasrec", shared_data("ml-1m"))
    s = log.stats()
    assert (s["users"], s["items"], s["interactions"]) == (6040, 3416, 999611)
    assert log.items.set_index("item").loc[1, "title"] == "Raiders of the Lost Ark (1981)"
    # the order of lines is the time order: ts counts up within each user
    first = log.events[log.events["user"] == 1]["ts"].to_numpy()
    assert (np.diff(first) == 1).all()


def test_sasrec_format_bad_lines(tmp_path):
    p = write(tmp_path, "x.txt", "1 5\n1 x\n2 3 4\n\n2 6\n")
    log = load_sasrec(p)
    assert log.bad_rows.lines == {"missing or bad item id": [2], "extra fields (expected `user item`)": [3],
                                  "missing or bad user id": [4]}
    assert len(log.events) == 2 and log.rows_read == 5


def test_recbole_ml100k():
    log = load("recbole", shared_data("ml-100k"))
    s = log.stats()
    assert (s["users"], s["items"], s["interactions"], s["bad_rows"]) == (943, 1682, 100000, 0)
    assert log.items.set_index("item").loc[1, "genres"] == "Animation|Children's|Comedy"


def test_generic_csv_with_mapping_and_event_map(tmp_path):
    p = write(tmp_path, "shop.csv",
              "cust,sku,when,action,name\n"
              "a,X1,2024-01-01T10:00:00Z,add_to_cart,Red shoe\n"
              "a,X2,2024-01-01T10:05:00Z,view,Blue shoe\n"
              "b,X1,2024-01-02T09:00:00Z,refund,Red shoe\n"
              ",X3,2024-01-02T09:00:00Z,view,Hat\n")
    log = load_table(p, {"user": "cust", "item": "sku", "ts": "when", "event": "action", "title": "name"},
                     event_map={"add_to_cart": "cart"})
    assert log.events["event"].tolist() == [EventType.CART, EventType.VIEW]
    assert log.bad_rows.lines == {"unknown event type": [4], "missing user id": [5]}
    assert log.items.set_index("item").loc["X2", "title"] == "Blue shoe"
    pq = tmp_path / "shop.parquet"
    log.events.to_parquet(pq)
    again = load_table(pq, {"user": "user", "item": "item", "ts": "ts"})
    assert len(again.events) == 2


def test_generic_csv_missing_mapped_column(tmp_path):
    p = write(tmp_path, "shop.csv", "cust,sku\na,b\n")
    with pytest.raises(DataError, match=r"\['customer'\]"):
        load_table(p, {"user": "customer", "item": "sku"})
