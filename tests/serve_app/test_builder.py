"""The app builder's typed args and the shape of the graph, without starting Ray."""
import ast
import inspect
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

from serve_app import app, decision, retrieval, sessions
from serve_app.builder import AppArgs, build_app

CONFIG = Path(__file__).resolve().parents[2] / "serve_app" / "config.yaml"


def _yaml_args() -> dict:
    return yaml.safe_load(CONFIG.read_text())["applications"][0]["args"]


def test_the_yaml_args_validate_and_serve_validates_them_for_the_builder(tmp_path):
    args = AppArgs.model_validate(_yaml_args())
    assert args.in_ingress == ["popularity"] and args.ingress_batch.linger_ms == 40
    assert inspect.signature(build_app).parameters["args"].annotation is AppArgs
    folder = {"engines": {"popularity": str(tmp_path)}, "decision": None}
    application = call_user_app_builder_with_args_if_necessary(build_app, folder)  # as `serve run` does
    assert type(application).__name__ == "Application"


@pytest.mark.parametrize("bad, says", [
    ({"engines": {"sequence": "x"}, "max_batch_size": 16}, "max_batch_size"),
    ({"engines": {"vae": "x"}}, "sequence"),
    ({"engines": {"sequence": None}}, "no retrieval engine configured"),
    ({"engines": {"sequence": "x"}, "ingress_batch": {"max_batch": 0}}, "max_batch"),
    ({"engines": {"popularity": "x"}, "in_ingress": ["popularity"], "faults": {"popularity": {"fail": True}}},
     "remove them from in_ingress"),
])
def test_bad_args_fail_naming_the_field(bad, says):
    with pytest.raises(ValidationError, match=says):
        AppArgs.model_validate(bad)


def _remote_calls(module) -> set[str]:
    """Method names the module calls on handles: `<handle>.<method>.remote(...)`."""
    return set(re.findall(r"\.(\w+)\.remote\(", inspect.getsource(module)))


def _public_methods(cls) -> set[str]:
    tree = ast.parse(inspect.getsource(cls.func_or_class))
    body = tree.body[0].body
    return {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and not n.name.startswith("_")}


def test_every_deployment_method_has_a_caller_in_the_ingress():
    """No dead serving path: what a replica exposes, the ingress calls (a method without a caller,
    and the knobs that tune it, would be tested and configured for nothing)."""
    called = _remote_calls(app)
    for deployment in (retrieval.RetrievalEngine, decision.DecisionRanker, sessions.SessionStore):
        unused = _public_methods(deployment) - called
        assert not unused, f"{deployment.name}: {sorted(unused)} have no caller in serve_app/app.py"
