"""WorkerDispatch adapters: the worker-facing API over HTTP, and an in-memory fake."""
