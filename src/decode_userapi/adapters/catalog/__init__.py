"""ApplicationCatalogSource adapters: a YAML file re-read when it changes, and an in-memory catalog."""
