import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from tests.training.synthetic import make_processed, tiny_config, tiny_encoder
from training.doc2vec import Doc2VecEncoder, KnownVectors, document_key

HISTORY = [[0, 7], [7, 13, 20]]


def test_doc2vec_multiword_label_names_stay_one_token() -> None:
    data = make_processed(n_clients=20)
    encoder = tiny_encoder(data, tiny_config())
    assert "패션 잡화 품목0" in encoder.model.wv.key_to_index
    assert "패션" not in encoder.model.wv.key_to_index


def test_infer_same_history_twice_gives_identical_vectors() -> None:
    encoder = tiny_encoder(make_processed(n_clients=20), tiny_config())
    first, second = encoder.infer([HISTORY, HISTORY[:1]]), encoder.infer([HISTORY])
    assert first.shape == (2, 8) and first.dtype == np.float32
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], first[1])


class Reseeded:
    """The reference behaviour SeedDraws replaces: a new RandomState(seed) for every document."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.state = np.random.RandomState(seed)

    def restart(self) -> None:
        self.state = np.random.RandomState(self.seed)

    def randint(self, low: int, high: int) -> int:
        return int(self.state.randint(low, high))


def test_infer_with_replayed_draws_equals_a_freshly_seeded_random_state_per_document() -> None:
    data = make_processed(n_clients=20)
    encoder = tiny_encoder(data, tiny_config())
    histories = [HISTORY, HISTORY[:1], [[3, 4, 5], [1], [2, 9]]] * 2
    replayed = encoder.infer(histories)
    trained_random = encoder.model.random
    encoder.draws = Reseeded(encoder.seed)  # type: ignore[assignment]
    np.testing.assert_array_equal(replayed, encoder.infer(histories))
    assert encoder.model.random is trained_random  # inference leaves the model's own RNG in place


def test_infer_empty_or_unknown_history_gives_zero_vector() -> None:
    encoder = tiny_encoder(make_processed(n_clients=20), tiny_config())
    assert not encoder.infer([[]]).any()
    assert not encoder.infer_words(["never seen"]).any()


def test_doc2vec_training_is_reproducible() -> None:
    data, config = make_processed(n_clients=20), tiny_config()
    np.testing.assert_array_equal(
        tiny_encoder(data, config).model.wv.vectors, tiny_encoder(data, config).model.wv.vectors
    )


def test_infer_in_another_process_with_other_hash_seed_is_identical(tmp_path: Path) -> None:
    data = make_processed(n_clients=20)
    encoder = tiny_encoder(data, tiny_config())
    encoder.save(tmp_path / "d2v.model")
    loaded = Doc2VecEncoder.load(tmp_path / "d2v.model", data.vocab.labels, epochs=5, seed=42)
    expected = loaded.infer([HISTORY])[0]
    code = textwrap.dedent(f"""
        import numpy as np
        from tests.training.synthetic import make_vocab
        from training.doc2vec import Doc2VecEncoder, KnownVectors, document_key
        from pathlib import Path
        enc = Doc2VecEncoder.load(Path("d2v.model"), make_vocab().labels, epochs=5, seed=42)
        np.save("vec.npy", enc.infer([{HISTORY!r}])[0])
    """)
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "vec.npy"), expected)


def test_document_key_is_the_words_in_order_whatever_the_sessions() -> None:
    assert document_key([[0, 7], [7, 13]]) == document_key([[0], [7, 7, 13]])
    assert document_key([[0, 7]]) != document_key([[7, 0]])
    assert document_key([]) == document_key([[]])


def test_known_vectors_look_up_known_documents_and_infer_the_others_identically() -> None:
    encoder = tiny_encoder(make_processed(n_clients=20), tiny_config())
    known = [HISTORY, [[3, 4, 5], [1]]]
    table = encoder.infer(known)
    table[1] = 7.0  # a looked-up vector is served as stored (shows that no inference ran)
    vectors = KnownVectors(encoder, [document_key(h) for h in known], table, remember=1)
    others = [[[2, 9]], HISTORY[:1]]
    got = vectors.infer([known[1], others[0], known[0], others[1], others[0]])
    np.testing.assert_array_equal(got[[2, 0]], table)
    inferred = encoder.infer(others)
    np.testing.assert_array_equal(got[[1, 3, 4]], inferred[[0, 1, 0]])
    assert list(vectors._inferred) == [document_key(others[0])]  # remembers 1: the latest used
    assert vectors.infer([]).shape == (0, 8)
