"""The model host: load a model, batch requests through it, stream tokens out. No HTTP in here."""

import os

# No code may reach a model hub; without this some transformers calls wait on network time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
