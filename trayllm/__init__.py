"""trayllm: a local LLM on your desktop that accounts for every request."""

__version__ = "0.1.0"
