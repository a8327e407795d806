import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from tests.training.synthetic import make_processed, tiny_config, tiny_encoder
from tests.training.test_products import VOCAB, write_folder
from training.artifacts import CURRENT, DOC_VECTORS, client_documents, load_artifacts, write_artifacts
from training.errors import ArtifactError
from training.features import FeatureBuilder, FeatureSchema
from training.load import load_tables
from training.pipeline import client_records, clients_frame
from training.products import FILES as PRODUCT_FILES
from training.products import ProductTables, build_product_tables
from training.train import build_model


@pytest.fixture(scope="module")
def parts() -> dict[str, Any]:
    data, config = make_processed(n_clients=12), tiny_config()
    schema = FeatureSchema.create(data.vocab, config)
    torch.manual_seed(0)
    return {
        "model": build_model(schema, data.vocab, config, targets=[[0]]).eval(),
        "encoder": tiny_encoder(data, config),
        "vocab": data.vocab,
        "clients": clients_frame(client_records(data)),
        "metadata": {"feature_schema": schema.to_json(), "n_labels": data.vocab.n_labels},
    }


def write(root: Path, parts: dict[str, Any], **extra: Any) -> Path:
    return write_artifacts(root, fingerprint="0123456789abcdef", **parts, **extra)


def test_write_then_load_round_trip_scores_equal(tmp_path: Path, parts: dict[str, Any]) -> None:
    version = write(tmp_path, parts)
    loaded = load_artifacts(tmp_path)
    assert loaded.path == version.resolve()
    assert os.readlink(tmp_path / CURRENT) == version.name  # relative link
    assert set(loaded.metadata["files"]) == {
        "model.pt",
        "doc2vec.model",
        "doc_vectors.npy",
        "vocab.json",
        "clients.parquet",
    }
    assert loaded.metadata["version"] == version.name and version.name.endswith("-01234567")
    histories = [list(s[:-1]) for s in loaded.clients["sessions"].to_list()[:3]]
    inputs = loaded.builder.build_batch(
        histories, loaded.clients["gender"][:3].to_list(), loaded.clients["age"][:3].to_list()
    )
    with torch.inference_mode():
        assert torch.allclose(loaded.model(*inputs), parts["model"](*inputs), atol=1e-6)
    assert loaded.clients.schema["sessions"] == pl.List(pl.List(pl.Int32))


def test_load_version_folder_directly(tmp_path: Path, parts: dict[str, Any]) -> None:
    version = write(tmp_path, parts)
    assert load_artifacts(version).metadata["version"] == version.name


def test_second_write_switches_current(tmp_path: Path, parts: dict[str, Any]) -> None:
    first = write(tmp_path, parts)
    second = write(tmp_path, parts)
    assert first != second
    assert (tmp_path / CURRENT).resolve() == second.resolve()


def test_failed_write_leaves_current_and_no_partial_folder(tmp_path: Path, parts: dict[str, Any]) -> None:
    first = write(tmp_path, parts)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(
        FileNotFoundError
    ):  # the report file vanished: the write fails after the model is saved
        write(tmp_path, parts, extra_files={"report.md": tmp_path / "missing.md"})
    assert (tmp_path / CURRENT).resolve() == first.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert load_artifacts(tmp_path).metadata["version"] == first.name


@pytest.mark.parametrize("name", ["model.pt", "clients.parquet", "doc2vec.model", DOC_VECTORS])
def test_corrupt_file_raises_artifact_error_naming_it(
    tmp_path: Path, parts: dict[str, Any], name: str
) -> None:
    version = write(tmp_path, parts)
    with (version / name).open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ArtifactError, match=re.escape(f"{name}: SHA-256 mismatch")):
        load_artifacts(tmp_path)


def test_missing_file_or_checksum_raises_artifact_error(tmp_path: Path, parts: dict[str, Any]) -> None:
    version = write(tmp_path, parts)
    (version / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match=re.escape("vocab.json: missing")):
        load_artifacts(version)
    meta = json.loads((version / "metadata.json").read_text())
    del meta["files"]["vocab.json"]
    (version / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=re.escape("no checksum listed for vocab.json")):
        load_artifacts(version)


def _training_path_vectors(parts: dict[str, Any]) -> np.ndarray:
    """Every client's history vector as the training side computes it: the plain encoder, no lookup."""
    schema = FeatureSchema.from_json(parts["metadata"]["feature_schema"])
    builder = FeatureBuilder(parts["vocab"], schema, parts["encoder"])
    documents = client_documents(builder, parts["clients"])
    return builder.build_batch(documents, [0] * len(documents), [0] * len(documents)).doc_vec.numpy()


def test_history_vectors_written_and_served_equal_the_training_paths(
    tmp_path: Path, parts: dict[str, Any]
) -> None:
    version = write(tmp_path, parts)
    expected = _training_path_vectors(parts)
    np.testing.assert_array_equal(np.load(version / DOC_VECTORS), expected)
    loaded = load_artifacts(tmp_path)
    sessions = loaded.clients["sessions"].to_list()
    n = len(sessions)
    served = loaded.builder.build_batch(sessions, [0] * n, [0] * n).doc_vec.numpy()
    np.testing.assert_array_equal(served, expected)
    # A history no client has (one session fewer) is inferred, as before.
    shorter = [s[:-1] for s in sessions[:3]]
    np.testing.assert_array_equal(
        loaded.builder.build_batch(shorter, [0] * 3, [0] * 3).doc_vec.numpy(),
        parts["encoder"].infer([loaded.builder.recent(h) for h in shorter]),
    )


def _rewrite_listed(version: Path, name: str, write_file: Any) -> None:
    """Replace a file and its checksum, as a tool that regenerated it would."""
    from training.artifacts import sha256_file

    write_file(version / name)
    meta = json.loads((version / "metadata.json").read_text())
    meta["files"][name] = sha256_file(version / name)
    (version / "metadata.json").write_text(json.dumps(meta))


def test_history_vectors_that_differ_from_inference_raise_artifact_error(
    tmp_path: Path, parts: dict[str, Any]
) -> None:
    version = write(tmp_path, parts)
    vectors = np.load(version / DOC_VECTORS)
    _rewrite_listed(version, DOC_VECTORS, lambda path: np.save(path, vectors + np.float32(1e-3)))
    with pytest.raises(ArtifactError, match=re.escape("doc_vectors.npy: history vectors differ")):
        load_artifacts(version)
    _rewrite_listed(version, DOC_VECTORS, lambda path: np.save(path, vectors[:-1]))
    with pytest.raises(ArtifactError, match=re.escape(f"expected float32 ({len(vectors)}, 8)")):
        load_artifacts(version)


def test_version_without_history_vectors_computes_them_at_load(tmp_path: Path, parts: dict[str, Any]) -> None:
    version = write(tmp_path, parts)
    (version / DOC_VECTORS).unlink()  # a version written before the file existed
    meta = json.loads((version / "metadata.json").read_text())
    del meta["files"][DOC_VECTORS]
    (version / "metadata.json").write_text(json.dumps(meta))
    loaded = load_artifacts(version)
    sessions = loaded.clients["sessions"].to_list()
    n = len(sessions)
    np.testing.assert_array_equal(
        loaded.builder.build_batch(sessions, [0] * n, [0] * n).doc_vec.numpy(), _training_path_vectors(parts)
    )


def test_load_without_artifacts_raises_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=re.escape("no metadata.json")):
        load_artifacts(tmp_path)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> ProductTables:
    folder = write_folder(tmp_path_factory.mktemp("products") / "lpoint")
    return build_product_tables(
        load_tables(folder, need_hits=False), VOCAB, client_ids=[1, 4, 5], drop_first_hit=False
    )


def test_product_tables_written_checksummed_and_loaded(
    tmp_path: Path, parts: dict[str, Any], products: ProductTables
) -> None:
    write(tmp_path, parts, products=products)
    loaded = load_artifacts(tmp_path)
    assert set(PRODUCT_FILES) <= set(loaded.metadata["files"])
    assert loaded.metadata["products"] == products.summary()
    assert loaded.products is not None and loaded.products.as_of == 20180410
    assert loaded.products.catalogue.equals(products.catalogue)
    assert loaded.products.clients.equals(products.clients)


@pytest.mark.parametrize("name", PRODUCT_FILES)
def test_corrupt_or_unlisted_product_table_raises_artifact_error(
    tmp_path: Path, parts: dict[str, Any], products: ProductTables, name: str
) -> None:
    version = write(tmp_path, parts, products=products)
    with (version / name).open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ArtifactError, match=re.escape(f"{name}: SHA-256 mismatch")):
        load_artifacts(tmp_path)
    meta = json.loads((version / "metadata.json").read_text())
    del meta["files"][name]
    (version / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=re.escape(f"no checksum listed for {name}")):
        load_artifacts(version)


def test_version_without_product_tables_loads_without_them(tmp_path: Path, parts: dict[str, Any]) -> None:
    write(tmp_path, parts)  # a version written before product tables existed
    assert load_artifacts(tmp_path).products is None
