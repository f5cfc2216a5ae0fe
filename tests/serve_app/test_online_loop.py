"""The loop closed online, over real HTTP (one Ray + Serve start for the module, tiny budgets):
acknowledged events are in the REES46 event log and survive a sessions-replica restart; an invalid
event gets a 422 and is not stored; a promotion moves what /version reports without a redeploy, with
no failed request while the model swaps."""
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray_session, pytest.mark.slow]  # own Ray in-process: run apart (tests/run_suite.sh)

from raycluster import free_port  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.setenv("RECSYS_HOME", str(tmp / "home"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    from models.popularity import PopularityEngine
    from reccore import tracking
    from recdata.dataset import prepare
    from serve_app.run import deploy, load_config

    rng = np.random.default_rng(1)
    rows = [(u, int(i), t, "view", "a.x", float(i)) for u in range(40) for t, i in enumerate(rng.integers(100, 140, 8))]
    csv = tmp / "events.csv"
    pd.DataFrame(rows, columns=["user", "item", "ts", "event", "category", "price"]).to_csv(csv, index=False)
    ds = prepare("csv", csv, mapping=dict(ts="ts", event="event", category="category", price="price"))
    engine = PopularityEngine(catalog=ds.catalog).fit(ds.train)
    with tracking.run("loop-test"):
        tracking.log_engine(engine, registered_name="pop-loop", alias="champion")
        v2 = tracking.log_engine(PopularityEngine(catalog=ds.catalog).fit(ds.train), registered_name="pop-loop",
                                 alias="")
    port = free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=str(Path("/tmp") / f"rsvl{os.getpid()}"),
             logging_level="ERROR", namespace="serve")
    config = load_config(engines={"popularity": str(engine.save(tmp / "popularity")),
                                  "sequence": "models:/pop-loop@champion", "discovery": None, "similarity": None},
                         decision=None, port=port,
                         args={"reload_s": 0.5, "candidates_per_engine": 10,
                               "budgets_ms": {"sequence": 5000, "popularity": 5000, "sessions": 5000}})
    try:
        url = deploy(config)
        yield {"url": url, "events_dir": Path(config["applications"][0]["args"]["events_dir"]), "v2": v2}
    finally:
        ray.shutdown()
        mp.undo()


def _stored(events_dir: Path) -> pd.DataFrame:
    files = sorted(events_dir.glob("events-*.csv"))
    return pd.concat([pd.read_csv(f, dtype=str) for f in files]) if files else pd.DataFrame()


def _kill_replica(role: str) -> str:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith(f"SERVE_REPLICA::recsys#{role}#")]
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def test_events_are_logged_and_survive_a_sessions_restart(served):
    url, events_dir = served["url"], served["events_dir"]
    with httpx.Client(base_url=url, timeout=30) as c:
        for item, ev in [(101, "view"), (102, "cart"), (103, "purchase")]:
            r = c.post("/events", json={"user_id": 7, "item": item, "event": ev})
            assert r.status_code == 200, r.text
        assert r.json()["length"] == 3
        before = len(_stored(events_dir))
        bad = c.post("/events", json={"user_id": 7, "item": 104, "event": "like"})
        assert bad.status_code == 422 and len(_stored(events_dir)) == before  # invalid: never stored
        log = _stored(events_dir)
        mine = log[log["user_id"] == "7"]
        assert mine["product_id"].tolist() == ["101", "102", "103"]
        assert mine["event_type"].tolist() == ["view", "cart", "purchase"]
        assert mine["category_code"].tolist() == ["a.x"] * 3  # the catalog's details, for retraining
        assert mine["price"].tolist() == ["101.00", "102.00", "103.00"]

        killed = _kill_replica("sessions")
        deadline = time.time() + 90
        while time.time() < deadline:  # Serve starts a new replica; it rebuilds the sessions from the log
            r = c.post("/events", json={"user_id": 7, "item": 104})
            if r.status_code == 200:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        assert r.json()["length"] == 4  # the three events from before the restart are back
        info = c.get("/version").json()["engines"]["sessions"]
        assert info["rebuilt"]["events"] >= 3 and info["log_file"] not in killed
        rec = c.post("/recommend", json={"user_id": 7, "history": [], "k": 5}).json()
        assert rec["history_used"] == 4 and not {101, 102, 103, 104} & {x["item"] for x in rec["items"]}


def test_an_event_batch_is_stored_whole_or_not_at_all(served):
    url, events_dir = served["url"], served["events_dir"]
    with httpx.Client(base_url=url, timeout=30) as c:
        before = len(_stored(events_dir))
        bad = c.post("/events/batch", json={"events": [{"session_id": "b1", "item": 101},
                                                       {"session_id": "b1", "item": 102, "event": "like"}]})
        assert bad.status_code == 422 and "events" in bad.text and len(_stored(events_dir)) == before
        assert c.post("/events/batch", json={"events": []}).status_code == 422
        r = c.post("/events/batch", json={"events": [{"session_id": "b1", "item": 101},
                                                     {"session_id": "b1", "item": 102, "event": "cart"},
                                                     {"user_id": 9, "item": 103, "event": "purchase"}]})
        assert r.status_code == 200, r.text
        assert r.json()["stored"] == 3
        assert [(s["session"], s["length"]) for s in r.json()["sessions"]] == [("b1", 1), ("b1", 2), ("9", 1)]
        log = _stored(events_dir)
        assert log[log["user_session"] == "b1"]["product_id"].tolist() == ["101", "102"]
        assert log[log["user_id"] == "9"]["event_type"].tolist() == ["purchase"]


def test_a_promotion_moves_version_without_a_failed_request(served):
    from trainers.promote import promote

    url = served["url"]
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/version").json()["engines"]["sequence"]["registry_version"] == "1"
        failed, stop = [], threading.Event()

        def load():
            with httpx.Client(base_url=url, timeout=30) as lc:
                while not stop.is_set():
                    r = lc.post("/recommend", json={"history": [101, 102], "k": 5})
                    if r.status_code != 200 or "sequence" in r.json()["degraded"]:
                        failed.append(r.text[:200])

        th = threading.Thread(target=load)
        th.start()
        try:
            promote("pop-loop", served["v2"], reason="test")
            deadline, seen = time.time() + 60, None
            while time.time() < deadline:
                seen = c.get("/version").json()["engines"]["sequence"]
                if seen.get("registry_version") == served["v2"]:
                    break
                time.sleep(0.25)
        finally:
            stop.set()
            th.join()
        assert seen["registry_version"] == served["v2"] and seen["uri"] == "models:/pop-loop@champion"
        assert seen["pinned"] == f"models:/pop-loop/{served['v2']}"
        assert not failed, failed[:3]
