"""Model conversion: source model -> models/<name>/{graph,layers,saved_model,manifest.json}."""
