"""wdrec's online side: a FastAPI service over the exported artifacts."""
