"""cluster.yaml against Ray's own schema; the KubeRay manifests and the Dockerfile agree with it."""
import importlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

from support import REPO

IMAGE_RE = re.compile(r"^[\w.\-/:]+$")


def cluster_config():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_is_valid_for_the_ray_launcher():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = cluster_config()
    jsonschema.validate(cfg, schema)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cfg))  # fills defaults the way `ray up` does, then re-checks
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types and {"cpu_worker", "gpu_worker"} <= set(types)
    assert types["gpu_worker"]["min_workers"] == 0  # GPU nodes only when asked for
    assert sum(t.get("max_workers", 0) for t in types.values()) >= cfg["max_workers"] > 0


def test_a_broken_cluster_yaml_is_rejected_by_the_same_check():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = cluster_config()
    cfg["available_node_types"]["cpu_worker"]["min_workerz"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, schema)


def manifests():
    return {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted((REPO / "k8s").glob("*.yaml"))}


def _images(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("image", "worker_image") and isinstance(v, str):
                yield v
            else:
                yield from _images(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _images(v)


def test_one_image_everywhere_and_built_by_the_dockerfile():
    base_image = cluster_config()["docker"]["image"]
    assert IMAGE_RE.match(base_image)
    for name, docs in manifests().items():
        for image in _images(docs):
            assert image == base_image, f"{name} uses {image}, cluster.yaml {base_image}"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"docker build -t {base_image} ." in dockerfile
    ray_version = re.search(r"^FROM rayproject/ray:([\d.]+)-", dockerfile, re.M).group(1)
    assert ray_version == ray.__version__  # the image runs the Ray the project is tested with
    for folder in ("recdata", "models", "trainers", "envs", "serve_app", "tune_configs"):
        assert f"COPY --chown=ray:users {folder} {folder}" in dockerfile


def test_kuberay_manifests_are_well_formed_and_point_at_real_code():
    docs = manifests()
    kinds = {d["kind"]: d for ds in docs.values() for d in ds}
    assert set(kinds) == {"RayJob", "RayService"}
    for d in kinds.values():
        assert d["apiVersion"] == "ray.io/v1" and d["metadata"]["name"]
    job = kinds["RayJob"]["spec"]
    module = re.match(r"python -m ([\w.]+)", job["entrypoint"]).group(1)
    assert importlib.util.find_spec(module) is not None
    assert job["rayClusterSpec"]["rayVersion"] == ray.__version__
    serve = yaml.safe_load(kinds["RayService"]["spec"]["serveConfigV2"])
    app = serve["applications"][0]
    mod, attr = app["import_path"].split(":")
    assert (REPO / (mod.replace(".", "/") + ".py")).exists(), f"{app['import_path']} does not exist"
    assert kinds["RayService"]["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    local = yaml.safe_load((REPO / "serve_app" / "config.yaml").read_text())["applications"][0]
    assert app["import_path"] == local["import_path"]
    assert app["args"]["engines"] == local["args"]["engines"]  # same registry aliases as `serve run`
    assert set(app["args"]) <= set(local["args"])
