"""`recsys promote ENGINE VERSION`: move `@champion` by hand, past the promotion gate, on the record.

    recsys promote vae 7                    # v7 serves everywhere within the app's reload_s
    recsys promote vae 7 --reason "A/B won"

The version that held `@champion` becomes `@challenger`. The override is an MLflow run in the
`promotions` experiment (engine, version, previous champion, who asked and why), so every move of
`@champion` is on record beside the gate's own decisions. Serving replicas following
`models:/<engine>@champion` swap to it on their next registry poll (serve_app/reload.py).
"""
from __future__ import annotations

import argparse
import getpass
import sys

from reccore import tracking


def promote(engine: str, version: str, reason: str = "manual override") -> dict:
    """Point `<engine>@champion` at `version`; the previous champion becomes @challenger."""
    client = tracking.configured_mlflow().MlflowClient()
    try:
        client.get_model_version(engine, str(version))
    except Exception as e:
        versions = sorted((int(v.version) for v in client.search_model_versions(f"name='{engine}'")), reverse=True)
        raise ValueError(f"{engine} has no version {version} (versions: {versions[:10] or 'none'}); "
                         "see `mlflow ui` or the pipeline's output for registered versions") from e
    previous = tracking.model_version(engine, "champion")
    client.set_registered_model_alias(engine, "champion", str(version))
    if previous and previous != str(version):
        client.set_registered_model_alias(engine, "challenger", previous)
    with tracking.run("promotions", run_name=f"promote-{engine}-v{version}"):
        tracking.log_params({"engine": engine, "version": str(version), "previous_champion": previous or "none",
                             "decision": "champion (override)", "reason": reason, "by": getpass.getuser()})
    return {"engine": engine, "champion": str(version), "previous": previous}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys promote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine", help="registered model name: popularity, vae, content, sasrec, dqn")
    p.add_argument("version", help="the version to serve")
    p.add_argument("--reason", default="manual override", help="why (kept in the MLflow record)")
    args = p.parse_args(argv)
    try:
        out = promote(args.engine, args.version, args.reason)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    moved = out["previous"] and out["previous"] != out["champion"]
    was = f" (was v{out['previous']}, now @challenger)" if moved else ""
    print(f"{args.engine}@champion -> v{out['champion']}{was}; logged in MLflow experiment 'promotions'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
