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

# Synthetic dataset -> records at 32/48/64 px -> verify -> a short two-stage training run -> analysis.
demo: $(VENV)/.installed
	$(PY) -m tools.make_synthetic --out $(DEMO)/synthetic.zip --classes 10 --train-per-class 100 --val-per-class 20
	$(PY) -m tools.convert --source $(DEMO)/synthetic.zip --out $(DEMO)/records --resolutions 32,48,64 --shards-per-split 4
	$(PY) -m tools.verify $(DEMO)/records
	$(PY) train.py --data $(DEMO)/records --run-dir $(DEMO)/run --config configs/demo.toml --quiet
	$(PY) -m tools.analyze --data $(DEMO)/records --run-dir $(DEMO)/run --resolution 48
	@$(PY) -c "import json; r = json.load(open('$(DEMO)/run/final.json')); \
	print(f\"demo: val top-1 {r['val_accuracy']:.1%} (chance 10%), top-5 {r['val_top5']:.1%} at {r['resolution']}px; see $(DEMO)/run\")"

# ruff, the main suite (TensorFlow backend), then the JAX-backend suite in its own process.
test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2
	KERAS_BACKEND=jax $(PY) -m pytest tests_jax

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache lr_find stats
