"""Network architectures of the model families."""
