"""Server-side inference: preprocessing, the classifier, request batching."""
