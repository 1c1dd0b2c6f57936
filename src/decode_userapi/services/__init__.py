"""Use cases over the ports: what the HTTP app, the CLI and the embedding API all call."""
