"""Config: typed models (schema), YAML loading with overrides (load), registries (registry)."""
