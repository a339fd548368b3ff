# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := demo_output

.PHONY: demo test lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) -m tools.make_synthetic --out $(DEMO)/synthetic.zip --classes 10 --train-per-class 100 --val-per-class 20
	$(PY) -m tools.convert --source $(DEMO)/synthetic.zip --out $(DEMO)/records --resolutions 32,48,64 --shards-per-split 4
	$(PY) -m tools.verify $(DEMO)/records

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache
