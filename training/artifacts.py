"""Write, read and verify a versioned artifact set; switch `root/current` atomically.

Writing goes to a hidden temporary sibling folder; every file is fsynced, the folder is renamed to its
version name, and only then does `current` (a relative symlink) move, by os.replace of a temporary symlink.
A run that fails or dies at any point before that leaves `current` where it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from training.artifact_files import CLIENTS, CURRENT, DOC2VEC, DOC_VECTORS, METADATA, MODEL, VOCAB
from training.dataset import Vocabulary
from training.doc2vec import Doc2VecEncoder, KnownVectors, document_key
from training.errors import ArtifactError
from training.features import MODEL_INPUTS, FeatureBuilder, FeatureSchema
from training.products import ProductTables, files_of

PRODUCTS = "products"  # metadata.json's entry for the product tables (absent in versions older than them)
REMEMBERED_DOCUMENTS = 10_000  # inferred history vectors kept per loaded version (~2 MB at 32 dimensions)
CHECKED_VECTORS = 8  # rows of doc_vectors.npy inferred again at load: it must match doc2vec.model exactly
CLIENTS_SCHEMA: dict[str, Any] = {
    "CLNT_ID": pl.Int64,
    "gender": pl.Int16,
    "age": pl.Int16,
    "sessions": pl.List(pl.List(pl.Int32)),
    "days": pl.List(pl.Int32),  # each session's day number (days since 1970-01-01), null where unknown
}


@dataclass(frozen=True)
class ArtifactSet:
    """A loaded, verified artifact version: everything serving needs."""

    path: Path  # the version folder
    model: torch.jit.ScriptModule
    encoder: Doc2VecEncoder
    vocab: Vocabulary
    metadata: dict[str, Any]
    clients: pl.DataFrame
    builder: FeatureBuilder
    products: ProductTables | None = None  # None: a version written before product tables existed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def script_model(model: torch.nn.Module) -> torch.jit.ScriptModule:
    """TorchScript of `model` in eval mode (torch warns that TorchScript is deprecated: known, silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted: torch.jit.ScriptModule = torch.jit.script(model.eval())
    return scripted


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_version(root: Path, fingerprint: str, now: dt.datetime) -> str:
    base = f"{now:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"
    version, n = base, 1
    while (root / version).exists():
        n += 1
        version = f"{base}-{n}"
    return version


def _write_payload(
    stage: Path,
    *,
    model: torch.nn.Module,
    encoder: Doc2VecEncoder,
    vocab: Vocabulary,
    clients: pl.DataFrame,
    metadata: Mapping[str, Any],
    products: ProductTables | None,
    extra_files: Mapping[str, Path],
) -> None:
    script_model(model).save(str(stage / MODEL))
    encoder.save(stage / DOC2VEC)
    schema = FeatureSchema.from_json(metadata["feature_schema"])
    np.save(
        stage / DOC_VECTORS, encoder.infer(client_documents(FeatureBuilder(vocab, schema, encoder), clients))
    )
    (stage / VOCAB).write_text(json.dumps(vocab.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
    clients.select(pl.col(name).cast(dtype) for name, dtype in CLIENTS_SCHEMA.items()).write_parquet(
        stage / CLIENTS
    )
    if products is not None:
        products.save(stage)
    for name, source in extra_files.items():
        shutil.copyfile(source, stage / name)


def switch_current(root: Path, version: str) -> None:
    """Point root/current at `version` with one atomic rename of a fresh relative symlink."""
    tmp = root / f".{CURRENT}.{version}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, root / CURRENT)
    _fsync(root)


def write_artifacts(
    root: Path,
    *,
    model: torch.nn.Module,
    encoder: Doc2VecEncoder,
    vocab: Vocabulary,
    clients: pl.DataFrame,
    metadata: Mapping[str, Any],
    fingerprint: str,
    products: ProductTables | None = None,
    extra_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write root/<version>/ (model, Doc2Vec, the clients' history vectors, vocab, clients, the product
    tables, `extra_files`, metadata with SHA-256 of each file) and switch root/current to it; return the
    version folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    version = _new_version(root, fingerprint, now)
    stage = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        _write_payload(
            stage,
            model=model,
            encoder=encoder,
            vocab=vocab,
            clients=clients,
            metadata=metadata,
            products=products,
            extra_files=extra_files or {},
        )
        files = {p.name: sha256_file(p) for p in sorted(stage.iterdir())}
        full = {
            "version": version,
            "created_at": now.isoformat(timespec="seconds"),
            **metadata,
            **({PRODUCTS: products.summary()} if products is not None else {}),
            "files": files,
        }
        (stage / METADATA).write_text(json.dumps(full, ensure_ascii=False, indent=1), encoding="utf-8")
        for path in stage.iterdir():
            _fsync(path)
        _fsync(stage)
        os.rename(stage, root / version)
        _fsync(root)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    switch_current(root, version)
    return root / version


def resolve_version(path: Path) -> Path:
    """A version folder as given, or the target of path/current."""
    path = Path(path)
    if (path / METADATA).exists():
        return path
    if (path / CURRENT).exists():
        return (path / CURRENT).resolve()
    raise ArtifactError(f"{path}: no {METADATA} and no '{CURRENT}' version (train first: wdrec train)")


def _verify(version_dir: Path) -> dict[str, Any]:
    meta_path = version_dir / METADATA
    try:
        metadata: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: unreadable ({exc})") from exc
    required = (
        MODEL,
        DOC2VEC,
        VOCAB,
        CLIENTS,
        *(files_of(metadata[PRODUCTS]) if PRODUCTS in metadata else ()),
    )
    for name in required:
        if name not in metadata.get("files", {}):
            raise ArtifactError(f"{meta_path}: no checksum listed for {name}")
    for name, expected in metadata["files"].items():
        file = version_dir / name
        if not file.is_file():
            raise ArtifactError(f"{file}: missing")
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file}: SHA-256 mismatch (corrupt or modified)")
    inputs = tuple(metadata.get("feature_schema", {}).get("inputs", ("hist", "gender", "age", "doc_vec")))
    if inputs != MODEL_INPUTS:
        raise ArtifactError(
            f"{meta_path}: the model takes ({', '.join(inputs)}) and this wdrec feeds "
            f"({', '.join(MODEL_INPUTS)}); retrain it with this version (wdrec train)"
        )
    return metadata


def load_artifacts(path: Path) -> ArtifactSet:
    """Load and verify the version at `path` (a version folder, or a root whose `current` is followed)."""
    version_dir = resolve_version(path)
    metadata = _verify(version_dir)
    vocab = Vocabulary.from_json(json.loads((version_dir / VOCAB).read_text(encoding="utf-8")))
    schema = FeatureSchema.from_json(metadata["feature_schema"])
    encoder = Doc2VecEncoder.load(
        version_dir / DOC2VEC, vocab.labels, epochs=schema.d2v_infer_epochs, seed=schema.d2v_seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(version_dir / MODEL), map_location="cpu")
    model.eval()
    clients = pl.read_parquet(version_dir / CLIENTS)
    documents = client_documents(FeatureBuilder(vocab, schema, encoder), clients)
    builder = FeatureBuilder(
        vocab, schema, _known_vectors(version_dir / DOC_VECTORS, metadata, encoder, documents)
    )
    products = ProductTables.load(version_dir, metadata[PRODUCTS]) if PRODUCTS in metadata else None
    return ArtifactSet(version_dir, model, encoder, vocab, metadata, clients, builder, products)


def client_documents(builder: FeatureBuilder, clients: pl.DataFrame) -> list[list[Sequence[int]]]:
    """Each client's history as the model sees it (`builder.recent` of every kept session): the document
    whose Doc2Vec vector serving needs for the client."""
    return [builder.recent(sessions) for sessions in clients["sessions"].to_list()]


def _known_vectors(
    path: Path, metadata: dict[str, Any], encoder: Doc2VecEncoder, documents: list[list[Sequence[int]]]
) -> KnownVectors:
    """The encoder with the clients' history vectors (`documents`' vectors) from `path`, a few rows
    checked against inference (ArtifactError naming the file if they differ); a version written before
    that file existed gets them computed here."""
    if path.name not in metadata["files"]:
        vectors = encoder.infer(documents)
    else:
        vectors = np.load(path)
        if vectors.shape != (len(documents), encoder.dim) or vectors.dtype != np.float32:
            raise ArtifactError(
                f"{path}: {vectors.dtype} {vectors.shape}; expected float32 ({len(documents)}, {encoder.dim})"
            )
        spread = np.linspace(0, max(len(documents) - 1, 0), CHECKED_VECTORS).astype(np.int64)
        rows = np.unique(spread)[: len(documents)]
        if not np.array_equal(encoder.infer([documents[row] for row in rows]), vectors[rows]):
            raise ArtifactError(f"{path}: history vectors differ from {DOC2VEC}'s inference")
    keys = [document_key(document) for document in documents]
    return KnownVectors(encoder, keys, vectors, remember=REMEMBERED_DOCUMENTS)
