"""The pure core: jobs, files, applications and identity as plain data. No I/O."""
