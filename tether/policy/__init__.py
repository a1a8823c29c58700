"""YAML policies: models, loader (`tether policy check`), decision engine and hot reload."""
