"""The file names of an artifact set, importable without torch (the service's supervisor reads them)."""

MODEL, DOC2VEC, VOCAB, METADATA, CLIENTS = (
    "model.pt",
    "doc2vec.model",
    "vocab.json",
    "metadata.json",
    "clients.parquet",
)
DOC_VECTORS = "doc_vectors.npy"  # float32 [clients, D]: each client's history vector, clients.parquet's order
CURRENT = "current"
