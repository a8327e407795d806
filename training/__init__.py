"""wdrec's offline side: load L.POINT logs, preprocess, train Wide & Deep, evaluate, export artifacts."""
