"""Optional dependencies: which extra brings which module, and the one error a missing one becomes.

A base install (``pip install trayllm``) has the client only: httpx, pydantic, click and python-json-logger.
Everything else comes with an extra, and the code that needs it imports it late. When such an import fails,
the user should read one line naming the extra to install, never a traceback, whichever command hit it. So
the CLI runs every command under ``require_extra`` (``trayllm.cli``), and the few places that catch an
ImportError to fall back on something else (the tray's backends, the GPU probes, the Elasticsearch client used
by the daemon) ask ``missing_extra`` for the same error.

A module counts as missing only when the top-level module itself is absent: a submodule or a dependency of an
installed package that fails to import is a broken install, not a missing extra, and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from trayllm.errors import TrayllmError

# Top-level module -> the extra in pyproject.toml that installs it (tests/test_extras.py checks both ways:
# each module's distribution is in that extra, and trayllm imports no other third-party module).
EXTRA_OF: Mapping[str, str] = {
    # the daemon: the model and the server
    "torch": "daemon",
    "transformers": "daemon",
    "safetensors": "daemon",
    "tokenizers": "daemon",
    "jinja2": "daemon",
    "huggingface_hub": "daemon",  # hub ids in the model setting, and `trayllm pull`
    "starlette": "daemon",
    "uvicorn": "daemon",
    "h11": "daemon",  # the HTTP parser under uvicorn, whose header deadline reads its state (daemon/connections.py)
    "prometheus_client": "daemon",
    # quantization and the GPU probe (nvidia-ml-py is in the daemon extra as well)
    "bitsandbytes": "gpu",
    "pynvml": "gpu",
    # the chat window and the tray (PyGObject is not here: it also needs system typelibs, see trayllm.tray.app)
    "PySide6": "gui",
    "pystray": "gui",
    "PIL": "gui",
    "jeepney": "gui",
    # shipping records and setting up Kibana
    "elasticsearch": "elastic",
}


class MissingExtra(TrayllmError):
    """Something needs a module that only an extra installs; the message is the pip command that adds it."""

    def __init__(self, needed_by: str, extra: str, module: str) -> None:
        super().__init__(f"{needed_by} needs the {extra!r} extra (no module named {module!r}): {pip_install(extra)}")
        self.extra = extra
        self.module = module


def pip_install(extra: str) -> str:
    """The command that adds ``extra`` to an installed trayllm, quoted for a POSIX shell."""
    return f"pip install 'trayllm[{extra}]'"


def missing_extra(exc: ImportError, needed_by: str) -> MissingExtra | None:
    """The MissingExtra for ``exc`` when it says an optional top-level module is absent; None for anything else
    (which the caller re-raises or handles as it did before)."""
    name = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if name is None or name not in EXTRA_OF:
        return None
    return MissingExtra(needed_by, EXTRA_OF[name], name)


@contextlib.contextmanager
def require_extra(needed_by: str) -> Iterator[None]:
    """Run the block; an optional module it cannot import becomes a MissingExtra that names ``needed_by``."""
    try:
        yield
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, needed_by)
        if error is None:
            raise
        raise error from None
