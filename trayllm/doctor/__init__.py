"""`trayllm doctor`: what this machine has, and which models its GPU can run."""
