"""`recsys serve`: start Ray + Serve with serve_app/config.yaml and print where everything is.

    python -m serve_app.run                                   # the YAML as is (models:/...@champion)
    python -m serve_app.run --engine popularity=.recsys/artifacts/popularity --no-decision
    python -m serve_app.run --address auto                    # deploy onto a running `ray start` cluster
    python -m serve_app.run --smoke                           # deploy, send the README request, stop

Deploys the YAML through the same controller call as `serve run serve_app/config.yaml`, after
applying the command-line overrides (engine URIs, port). Relative artifact folders are made absolute
and `tracking_uri` is filled from this process so replicas resolve `models:/` URIs against the same
MLflow store. `load_config` and `deploy` are reused by the tests and the load benchmark.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import yaml

from reccore import logs, tracking
from reccore.constants import ENGINE_ROLES as ROLES

CONFIG = Path(__file__).with_name("config.yaml")


def _absolute(uri: str | None) -> str | None:
    if not uri or "://" in str(uri) or str(uri).startswith(("models:/", "runs:/")):
        return uri
    return str(Path(uri).expanduser().resolve())


def load_config(path: str | Path = CONFIG, engines: dict | None = None, decision: str | None | bool = False,
                host: str | None = None, port: int | None = None, args: dict | None = None) -> dict:
    """The Serve config dict of the YAML with overrides. `engines`: {role: URI or None} replaces the
    given roles (None removes one); `decision`: a URI, None to remove it, False to keep the YAML's;
    `args`: more builder args merged in. Deployment entries of removed engines are dropped."""
    config = yaml.safe_load(Path(path).read_text())
    app = config["applications"][0]
    a = app.setdefault("args", {})
    a["engines"] = {**(a.get("engines") or {}), **(engines or {})}
    if decision is not False:
        a["decision"] = decision
    a.update(copy.deepcopy(args or {}))
    a["engines"] = {r: _absolute(u) for r, u in a["engines"].items() if u}
    a["decision"] = _absolute(a.get("decision"))
    if not a.get("tracking_uri"):
        a["tracking_uri"] = tracking.tracking_uri()
    # The app is built in a Ray worker with its own cwd: pin the event log to this process's work dir.
    a["events_dir"] = str(Path(a.get("events_dir") or tracking.work_dir() / "events").resolve())
    hosted = set(a.get("in_ingress") or [])  # roles loaded inside the ingress have no deployment
    built = (set(a["engines"]) - hosted) | {"Recommender", "sessions"} | ({"decision"} if a.get("decision") else set())
    app["deployments"] = [d for d in app.get("deployments", []) if d["name"] in built]
    http = config.setdefault("http_options", {})
    if host:
        http["host"] = host
    if port is not None:
        http["port"] = port
    return config


def deploy(config: dict, timeout_s: float = 180.0) -> str:
    """Start Serve (Ray must be initialized) and deploy the config; returns the app's base URL once
    every application is RUNNING, or raises with Serve's message when one fails to deploy."""
    # Lazy: Ray loads when deploying; `load_config` alone (tests, the demo's config) does not need it.
    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    logs.worker_setup()  # Serve set its driver logger to INFO when imported just now; quiet it again
    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(http_options=schema.http_options.model_dump(),
                                   global_logging_config=config.get("logging_config"),
                                   proxy_location=schema.proxy_location)
    client.deploy_apps(schema)
    names = [a.name for a in schema.applications]
    t0 = last_note = time.time()
    while True:
        status = serve.status().applications
        states = {n: status[n].status if n in status else "NOT_STARTED" for n in names}
        if all(s == "RUNNING" for s in states.values()):
            break
        failed = [n for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            raise RuntimeError(f"application {failed[0]} failed to deploy: {status[failed[0]].message}")
        if time.time() - last_note > 20:  # never silent for long: replicas load models, or wait for CPUs
            last_note = time.time()
            print(f"[serve] {time.time() - t0:.0f} s, applications: "
                  + ", ".join(f"{n} {s.lower()}" for n, s in states.items()), flush=True)
        if time.time() - t0 > timeout_s:
            raise TimeoutError(f"applications not RUNNING after {timeout_s:.0f}s: {states}; "
                               "replicas may be pending for CPUs -- lower num_cpus in the config")
        time.sleep(0.5)
    http = schema.http_options
    prefix = (schema.applications[0].route_prefix or "/").rstrip("/")
    return f"http://{http.host}:{http.port}{prefix}"


def token_path() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="recsys serve", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(CONFIG), help="Serve config YAML (default: serve_app/config.yaml)")
    p.add_argument("--engine", action="append", default=[], metavar="ROLE=URI",
                   help=f"artifact of a retrieval role ({', '.join(ROLES)}); ROLE= (empty) removes it")
    p.add_argument("--decision", default=None, help="DQN policy artifact URI (default: the YAML's)")
    p.add_argument("--no-decision", action="store_true", help="serve without the decision engine")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--address", default=None, help="Ray cluster to deploy to (default: start a local one)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--smoke", action="store_true", help="send the README request, print it, shut down")
    a = p.parse_args(argv)

    engines = {}
    for spec in a.engine:
        role, sep, uri = spec.partition("=")
        if not sep or role not in ROLES:
            p.error(f"--engine {spec!r}: use ROLE=URI with ROLE one of {', '.join(ROLES)}")
        engines[role] = uri or None
    decision = None if a.no_decision else (a.decision if a.decision else False)
    config = load_config(a.config, engines=engines, decision=decision, host=a.host, port=a.port)

    started_here = a.address is None
    if started_here:  # direct gRPC between replicas, user code on the replica's loop (Ray >= 2.55)
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    import ray  # lazy: after the environment Ray reads at import is set
    from ray import serve

    # address="local": always a new cluster here, never another process's cluster on this machine
    ctx = ray.init(address=a.address or "local", num_cpus=a.num_cpus if started_here else None, namespace="serve",
                   include_dashboard=True if started_here else None,
                   dashboard_host="127.0.0.1" if started_here else None, logging_level=logs.ray_logging_level(),
                   **({"runtime_env": logs.ray_runtime_env()} if started_here else {}))
    url = deploy(config)
    dash = getattr(ctx, "dashboard_url", None) or "(dashboard not running)"
    mode = os.environ.get("RAY_AUTH_MODE", "token (Ray 2.60 default)")
    print(f"recsys serving at {url}  (POST /recommend /similar /events, GET /healthz /version, docs {url}/docs)")
    print(f"Ray dashboard: http://{dash}" if not str(dash).startswith("http") else f"Ray dashboard: {dash}")
    if mode != "disabled":
        print(f"  auth: {mode}; token in {token_path()} (or $RAY_AUTH_TOKEN); send 'Authorization: Bearer <token>'"
              " or paste it in the dashboard; `ray get-auth-token` prints it")
    print("  metrics: Serve's and recsys_* (requests, latency per engine, fallbacks, empty results) on the "
          "dashboard's Metrics page / Prometheus export")
    sys.stdout.flush()
    if not started_here:  # deployed onto a running cluster: leave it serving, like `serve deploy`
        return
    try:
        if a.smoke:
            import httpx  # lazy: the HTTP client is only needed by --smoke (a test extra)

            body = {"history": [101, 204, 305], "user_id": "user_123"}
            r = httpx.post(f"{url}/recommend", json=body, timeout=30)
            print(f"POST /recommend {json.dumps(body)} -> {r.status_code}\n{json.dumps(r.json())[:3000]}")
            return
        print("Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
