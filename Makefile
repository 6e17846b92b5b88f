# The two commands of the README. Both create or update .venv/ first.
# `make lint` runs .pre-commit-config.yaml's hooks (flake8, isort, yapf) over
# the tree; tests/test_lint.py checks the same in `make test`.
PY := .venv/bin/python

.PHONY: env test demo lint
env:
	@bash tools/misc/install_env.sh

test: env
	$(PY) -m pytest tests -q

demo: env
	$(PY) tools/misc/run_demo.py

lint: env
	PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/pre-commit run --all-files
