# The two commands of the README. Both create or update .venv/ first.
PY := .venv/bin/python

.PHONY: env test demo
env:
	@bash tools/misc/install_env.sh

test: env
	$(PY) -m pytest tests -q

demo: env
	$(PY) tools/misc/run_demo.py
