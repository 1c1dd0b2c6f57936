"""Application catalog sources: a local YAML file, an S3 object, and an in-memory one."""
