"""HTTP entrypoints: decode, authorise, call a command or query, encode. Nothing else."""
