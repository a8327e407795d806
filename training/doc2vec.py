"""Doc2Vec over sessions as documents of CLAC3 names: training and deterministic inference.

A session is a document whose words are its CLAC3 label names; a name with spaces stays one token because
documents are passed to gensim as token lists, never as text. A history's vector is the vector of one
document, its most recent `max_sessions` sessions concatenated: one inference per client (serving pays
for it on every request) and the words of different sessions share one context, which is the point.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gensim.models.doc2vec import Doc2Vec, TaggedDocument
from gensim.models.doc2vec_inner import train_document_dbow, train_document_dm

from training.config import TrainConfig

log = logging.getLogger(__name__)

History = Sequence[Sequence[int]]  # sessions oldest first, each a list of label ids


def train_doc2vec(sessions: Sequence[Sequence[int]], labels: Sequence[str], config: TrainConfig) -> Doc2Vec:
    """Train on `sessions` (label-id lists); the caller passes context and train-target sessions only.

    One worker and a fixed seed make training reproducible (gensim's threads race on shared weights).
    """
    documents = [TaggedDocument([labels[i] for i in session], [n]) for n, session in enumerate(sessions)]
    model = Doc2Vec(
        vector_size=config.doc2vec.vector_size,
        dm=config.doc2vec.dm,
        window=config.doc2vec.window,
        negative=config.doc2vec.negative,
        min_count=1,  # every label is a real category; rare ones still deserve a word vector
        sample=0,  # no down-sampling: frequent labels are the re-purchases we care about
        epochs=config.doc2vec.epochs,
        workers=1,
        seed=config.seed,
    )
    model.build_vocab(documents)
    model.train(documents, total_examples=len(documents), epochs=model.epochs)
    log.info("doc2vec: %d documents, %d words, dm=%d", len(documents), len(model.wv), config.doc2vec.dm)
    return model


class SeedDraws:
    """Stands in for `model.random` during PV-DBOW inference: replays what a fresh RandomState(seed) draws.

    train_document_dbow draws exactly two randint(0, 2**24) per call (the seed of its negative sampling),
    so every document's inference sees the same 2 x epochs numbers; building a RandomState per document to
    get them cost 126 us, a third of a serving request's inference.
    """

    BOUND = 2**24

    def __init__(self, seed: int, count: int) -> None:
        state = np.random.RandomState(seed)
        self.values = [int(state.randint(0, self.BOUND)) for _ in range(count)]
        self.position = 0

    def restart(self) -> None:
        self.position = 0

    def randint(self, low: int, high: int) -> int:
        if (low, high) != (0, self.BOUND) or self.position >= len(self.values):
            raise RuntimeError(f"unexpected draw randint({low}, {high}) #{self.position} by gensim")
        self.position += 1
        return self.values[self.position - 1]


class Doc2VecEncoder:
    """Deterministic `infer_vector`: the same history gives the same vector in every process.

    gensim's `infer_vector` draws from `model.random` (negative samples, PV-DM windows) and seeds the
    starting vector with Python's `hash()` of the text, which changes between processes unless
    PYTHONHASHSEED is fixed. So this runs gensim's own inference routine with the RNG reseeded per call
    (PV-DBOW: `SeedDraws`) and a starting vector seeded by a CRC32 of the words, with a fixed number of
    epochs.
    """

    def __init__(self, model: Doc2Vec, labels: Sequence[str], *, epochs: int, seed: int) -> None:
        self.model = model
        self.labels = list(labels)
        self.epochs = epochs
        self.seed = seed
        self.draws = SeedDraws(seed, 2 * epochs)

    @property
    def dim(self) -> int:
        return int(self.model.vector_size)

    def infer_words(self, words: Sequence[str]) -> np.ndarray:
        """The vector of one document; an empty document (no known word) gives the zero vector."""
        model = self.model
        words = [w for w in words if w in model.wv.key_to_index]
        vector = np.zeros((1, self.dim), dtype=np.float32)
        if not words:
            return vector[0]
        start = np.random.default_rng(zlib.crc32("\x1f".join(words).encode()) ^ self.seed)
        vector[0] = (start.random(self.dim, dtype=np.float32) - 0.5) / self.dim
        trained_random = model.random
        if model.sg:
            self.draws.restart()
            model.random = self.draws
        else:  # PV-DM also draws window sizes, as many as the document has words
            model.random = np.random.RandomState(self.seed)
        try:
            self._epochs(words, vector)
        finally:
            model.random = trained_random  # what gets saved with the model stays gensim's own
        return vector[0]

    def _epochs(self, words: list[str], vector: np.ndarray) -> None:
        """gensim's inference updates of `vector` [1, D], learning rate decaying linearly as in training."""
        model = self.model
        lockf = np.ones(1, dtype=np.float32)
        work = np.zeros(model.layer1_size, dtype=np.float32)
        neu1 = np.zeros(model.layer1_size, dtype=np.float32)
        alpha, min_alpha = model.alpha, model.min_alpha
        step = (alpha - min_alpha) / max(self.epochs - 1, 1)
        frozen = {
            "learn_words": False,
            "learn_hidden": False,
            "doctag_vectors": vector,
            "doctags_lockf": lockf,
        }
        for _ in range(self.epochs):
            if model.sg:
                train_document_dbow(model, words, [0], alpha, work, **frozen)
            else:
                train_document_dm(model, words, [0], alpha, work, neu1, **frozen)
            alpha -= step

    def infer(self, histories: Sequence[History]) -> np.ndarray:
        """float32 [B, D]: one vector per history, its sessions' label names as one document."""
        out = np.zeros((len(histories), self.dim), dtype=np.float32)
        for b, history in enumerate(histories):
            out[b] = self.infer_words([self.labels[i] for session in history for i in session])
        return out

    def save(self, path: Path) -> None:
        # One file (no side .npy arrays), so the artifact set lists and checksums exactly one name.
        self.model.save(str(path), sep_limit=2**62)

    @classmethod
    def load(cls, path: Path, labels: Sequence[str], *, epochs: int, seed: int) -> Doc2VecEncoder:
        return cls(Doc2Vec.load(str(path)), labels, epochs=epochs, seed=seed)


def document_key(history: History) -> bytes:
    """A 128-bit digest of the document a history is (its label ids in order; sessions concatenated, as
    `Doc2VecEncoder.infer` reads them): equal keys mean the same words, so the same inferred vector."""
    words = array("i", [label for session in history for label in session])  # a list first: 20% faster
    return hashlib.blake2b(words.tobytes(), digest_size=16).digest()


class KnownVectors:
    """`Doc2VecEncoder.infer` that looks up what it computed before: the vectors of known documents (the
    artifact set's clients, computed when it was written) and of up to `remember` documents inferred
    since (a client's history after a recorded session); only other documents are inferred.

    A vector is a function of the document alone (the inference is seeded per document), so a lookup by
    `document_key` gives exactly the vector inference would: nothing here can go stale when a history
    changes, it only stops matching. One caller at a time, like the encoder it wraps.
    """

    def __init__(
        self, encoder: Doc2VecEncoder, keys: Sequence[bytes], vectors: np.ndarray, *, remember: int
    ) -> None:
        if vectors.shape != (len(keys), encoder.dim):
            raise ValueError(f"vectors of shape {vectors.shape} for {len(keys)} documents of {encoder.dim}")
        self.encoder = encoder
        self.vectors = vectors
        self._rows = {key: row for row, key in enumerate(keys)}
        self._remember = remember
        self._inferred: OrderedDict[bytes, np.ndarray] = OrderedDict()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def infer(self, histories: Sequence[History]) -> np.ndarray:
        """float32 [B, D], as `Doc2VecEncoder.infer`."""
        out = np.empty((len(histories), self.dim), dtype=np.float32)
        missing: list[tuple[int, bytes]] = []
        for b, history in enumerate(histories):
            key = document_key(history)
            row = self._rows.get(key)
            if row is not None:
                out[b] = self.vectors[row]
            elif (seen := self._inferred.get(key)) is not None:
                self._inferred.move_to_end(key)
                out[b] = seen
            else:
                missing.append((b, key))
        if missing:
            inferred = self.encoder.infer([histories[b] for b, _ in missing])
            for (b, key), vector in zip(missing, inferred, strict=True):
                out[b] = vector
                self._keep(key, vector)
        return out

    def _keep(self, key: bytes, vector: np.ndarray) -> None:
        if self._remember <= 0:
            return
        self._inferred[key] = vector
        if len(self._inferred) > self._remember:
            self._inferred.popitem(last=False)
