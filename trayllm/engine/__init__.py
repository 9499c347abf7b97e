"""The model host: load a model, batch requests through it, stream tokens out. No HTTP in here."""

import os

# Whether the user's own environment forbids the hub (huggingface_hub's spellings of true), read before the default
# below: the daemon's POST /api/pull lifts trayllm's switch for its download (daemon.ollama_pull), never the user's.
_OFFLINE = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
HUB_OFFLINE_BY_USER = _OFFLINE.upper() in ("1", "ON", "YES", "TRUE")
# The engine never reaches a model hub; without this some transformers calls wait on network time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
