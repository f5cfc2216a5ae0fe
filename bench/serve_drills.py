"""Drills of the closed loop, run by `python -m bench.serve_load --events-drill --swap-drill`.

- events throughput: events/s at 8 clients for a fixed time, beside /recommend's req/s: one event per
  request (POST /events) and `batch` events per request (POST /events/batch, what a collector that
  forwards a page's events sends). Both count only acknowledged events, which are on disk.
- events drill: 8 clients post events while the sessions replica, then the ingress replica, are
  killed. Every event carries its own session key, so `lost` is exact: acknowledged (200) events
  whose key is not in the event log. Unacknowledged events that were stored anyway (a timeout after
  the fsync) are counted apart; they are duplicates at worst, never losses.
- swap drill: under /recommend load at 8 clients, `@champion` of the role's registered model moves to a
  new version (`trainers.promote`); failed requests (non-200, or the role missing from the answer)
  during the swap, seconds until /version reports the new version on 5 polls in a row (every replica
  asked), and p99 during the swap against the steady state before it.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

EVENT_NAMES = ("view", "cart", "purchase")


async def _post_events(url: str, users: list, items: list, seconds: float, prefix: str,
                       concurrency: int = 8, batch: int = 0) -> dict:
    """Events with unique session keys `<prefix>-<n>` for `seconds`; returns the acknowledged keys.
    batch=0 posts one event per request to `url` (/events); batch=n posts n per request to /events/batch."""
    import httpx

    counter, acked, failed, lat = itertools.count(), [], [], []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    t_end = time.perf_counter() + seconds

    async def worker(client):
        while time.perf_counter() < t_end:
            ns = [next(counter) for _ in range(max(batch, 1))]
            keys = [f"{prefix}-{n}" for n in ns]
            events = [{"user_id": users[n % len(users)], "session_id": key, "item": items[n % len(items)],
                       "event": EVENT_NAMES[n % 3]} for n, key in zip(ns, keys)]
            t0 = time.perf_counter()
            try:
                r = await (client.post(url + "/batch", json={"events": events}) if batch
                           else client.post(url, json=events[0]))
                (acked if r.status_code == 200 else failed).extend(keys)
            except Exception:
                failed.extend(keys)
                await asyncio.sleep(0.05)  # the ingress is down: do not spin
            lat.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"acked": acked, "failed": failed, "rps": len(acked) / wall, "n": len(lat),
            "p50_ms": float(np.percentile(lat, 50)) if lat else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat else float("nan")}


def stored_keys(events_dir: Path, prefix: str) -> set[str]:
    keys: set[str] = set()
    for f in sorted(Path(events_dir).glob("events-*.csv")):
        df = pd.read_csv(f, dtype=str, keep_default_na=False, on_bad_lines="skip", usecols=["user_session"])
        keys.update(k for k in df["user_session"] if k.startswith(prefix + "-"))
    return keys


def events_throughput(base: str, users: list, items: list, seconds: float = 10.0, batch: int = 50) -> dict:
    """events/s (acknowledged) posted one per request and `batch` per request; `events_rps` is the
    batched figure when batch > 0, and the per-request latencies are of requests, not of events."""
    asyncio.run(_post_events(base + "/events", users, items, 1.0, f"warm-{uuid.uuid4().hex[:6]}"))
    one = asyncio.run(_post_events(base + "/events", users, items, seconds, f"tput-{uuid.uuid4().hex[:6]}"))
    out = {"events_single_rps": one["rps"], "events_single_p50_ms": one["p50_ms"],
           "events_single_p99_ms": one["p99_ms"], "events_tput_failed": len(one["failed"]), "events_batch": batch}
    if batch:
        many = asyncio.run(_post_events(base + "/events", users, items, seconds, f"tput-{uuid.uuid4().hex[:6]}",
                                        batch=batch))
        out.update(events_batch_p50_ms=many["p50_ms"], events_batch_p99_ms=many["p99_ms"],
                   events_tput_failed=out["events_tput_failed"] + len(many["failed"]))
    out["events_rps"] = many["rps"] if batch else one["rps"]
    return out


def _kill_and_wait(role: str, timeout_s: float = 90.0) -> float:
    """Kill one replica of `role`; seconds until the deployment has a fresh RUNNING replica."""
    import ray
    from ray import serve

    def names():
        return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith(f"SERVE_REPLICA::recsys#{role}#")]

    before = names()
    t0 = time.perf_counter()
    ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
    while time.perf_counter() - t0 < timeout_s:
        dep = serve.status().applications["recsys"].deployments[role]
        running = sum(v for k, v in dep.replica_states.items() if str(k).endswith("RUNNING"))
        if set(names()) - set(before) and running >= 1:
            break
        time.sleep(0.1)
    return time.perf_counter() - t0


def events_drill(base: str, users: list, items: list, events_dir: Path, seconds: float = 20.0) -> dict:
    """Kill the sessions replica 2 s in, the ingress replica once sessions is back (+2 s)."""
    prefix = f"drill-{uuid.uuid4().hex[:8]}"
    state = {}

    def killer():
        time.sleep(2.0)
        state["sessions_back_s"] = _kill_and_wait("sessions")
        time.sleep(2.0)
        state["ingress_back_s"] = _kill_and_wait("Recommender")

    th = threading.Thread(target=killer)
    th.start()
    r = asyncio.run(_post_events(base + "/events", users, items, seconds, prefix))
    th.join()
    time.sleep(1.0)
    stored = stored_keys(events_dir, prefix)
    acked = set(r["acked"])
    return {"events_acked": len(acked), "events_stored": len(stored & acked), "events_lost": len(acked - stored),
            "events_stored_unacked": len(stored - acked), "events_failed": len(r["failed"]),
            "sessions_back_s": state.get("sessions_back_s"), "ingress_back_s": state.get("ingress_back_s")}


def new_version_of(name: str) -> tuple[str, str]:
    """(current champion, a new version of `name` with the same artifact) in the app's registry."""
    from reccore import tracking

    client = tracking.configured_mlflow().MlflowClient()
    cur = client.get_model_version_by_alias(name, "champion")
    mv = client.create_model_version(name, source=cur.source, run_id=cur.run_id,
                                     description="bench.serve_load --swap-drill")
    return str(cur.version), str(mv.version)


async def _recommend_load(url: str, bodies: list[dict], seconds: float, role: str,
                          concurrency: int = 8) -> list[tuple[float, float, bool]]:
    """(answer time, latency ms, good) per request: good = a 200 that has `role` in it."""
    import httpx

    out, it = [], itertools.count()
    t_end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client):
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            try:
                r = await client.post(url, json=bodies[next(it) % len(bodies)])
                good = r.status_code == 200 and role not in r.json().get("degraded", [])
            except Exception:
                good = False
            t1 = time.perf_counter()
            out.append((t1, (t1 - t0) * 1000, good))

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return out


def swap_drill(base: str, bodies: list[dict], role: str, name: str, seconds: float = 20.0) -> dict:
    """Promote a new version of `name` (served as `role`) 5 s into a /recommend run at 8 clients."""
    import httpx

    from trainers.promote import promote

    old, new = new_version_of(name)
    state: dict = {}

    def swapper():
        time.sleep(5.0)
        state["t_promote"] = time.perf_counter()
        promote(name, new, reason="bench swap drill")
        streak = 0
        with httpx.Client(base_url=base, timeout=30) as c:
            while time.perf_counter() - state["t_promote"] < seconds:
                v = c.get("/version").json()["engines"].get(role, {}).get("registry_version")
                if v != new:
                    streak = 0
                    state.pop("t_first", None)
                else:
                    streak += 1
                    state.setdefault("t_first", time.perf_counter())
                if streak >= 5:
                    state["t_swapped"] = state["t_first"]
                    break
                time.sleep(0.1)

    th = threading.Thread(target=swapper)
    th.start()
    answers = asyncio.run(_recommend_load(base + "/recommend", bodies, seconds, role))
    th.join()
    promote(name, old, reason="bench swap drill: restore")  # leave the registry as it was
    t_p, t_s = state["t_promote"], state.get("t_swapped")
    window_end = (t_s if t_s else t_p + seconds) + 1.0
    during = [a for a in answers if t_p <= a[0] <= window_end]
    steady = [a for a in answers if a[0] < t_p]

    def p99(rows):
        return float(np.percentile([a[1] for a in rows], 99)) if rows else float("nan")

    return {"swap_failed_requests": sum(1 for a in during if not a[2]), "swap_requests": len(during),
            "swap_seconds": (t_s - t_p) if t_s else None, "swap_from": old, "swap_to": new,
            "swap_p99_ms": p99(during), "steady_p99_ms": p99(steady), "steady_requests": len(steady)}
