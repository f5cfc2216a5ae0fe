# Cluster image: the official Ray image with this project installed. cluster.yaml and the KubeRay
# manifests in k8s/ run this image; build and push it to a registry your nodes can pull from:
#   docker build -t ghcr.io/your-org/ray-recsys:0.1.0 . && docker push ghcr.io/your-org/ray-recsys:0.1.0
# (and change that one name in cluster.yaml and k8s/*.yaml if you use another).
FROM rayproject/ray:2.60.0-py311-cpu

WORKDIR /home/ray/recsys
# torch first from the CPU index: otherwise a dependency pulls the multi-GB CUDA build.
# For GPU workers build FROM rayproject/ray:2.60.0-py311-gpu and drop the --index-url.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users reccore reccore
COPY --chown=ray:users recdata recdata
COPY --chown=ray:users models models
COPY --chown=ray:users trainers trainers
COPY --chown=ray:users envs envs
COPY --chown=ray:users serve_app serve_app
COPY --chown=ray:users tune_configs tune_configs
# No bench/: benchmarks sit on top of every layer and nothing the cluster runs imports them
# (the layers contract in .importlinter keeps it so).
RUN pip install --no-cache-dir -e .
# Shared work dir (MLflow store, prepared data): mount a volume here, or set MLFLOW_TRACKING_URI to a
# tracking server so every node registers into one registry.
ENV RECSYS_HOME=/home/ray/recsys-home
