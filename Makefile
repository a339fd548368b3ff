# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := demo_output

.PHONY: demo demo-steps test test-colab lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Synthetic dataset -> records at 32/48/64 px -> verify -> a short two-stage training run -> analysis.
demo: $(VENV)/.installed demo-steps

demo-steps:
	$(PY) -m tools.make_synthetic --out $(DEMO)/synthetic.zip --classes 10 --train-per-class 100 --val-per-class 20
	$(PY) -m tools.convert --source $(DEMO)/synthetic.zip --out $(DEMO)/records --resolutions 32,48,64 --shards-per-split 4
	$(PY) -m tools.verify $(DEMO)/records
	$(PY) train.py --data $(DEMO)/records --run-dir $(DEMO)/run --config configs/demo.toml --quiet
	$(PY) -m tools.analyze --data $(DEMO)/records --run-dir $(DEMO)/run --resolution 48
	@$(PY) -c "import json; r = json.load(open('$(DEMO)/run/final.json')); \
	print(f\"demo: val top-1 {r['val_accuracy']:.1%} (chance 10%), top-5 {r['val_top5']:.1%} at {r['resolution']}px; see $(DEMO)/run\")"

# ruff, the main suite (TensorFlow backend), the JAX-backend suite in its own process, then Colab's versions.
test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 -m "not colab"
	KERAS_BACKEND=jax $(PY) -m pytest -n 2 tests_jax
	$(MAKE) --no-print-directory test-colab

# Colab's own versions (requirements-colab.txt: TF 2.19, Keras 3.10, numpy 2.0) on Python 3.12 where
# pyenv has it, so that no API newer than Colab's slips in: the demo, with nothing at all on stderr
# (the quiet start under TF 2.19), then the notebook executed as a GPU and as a TPU runtime, side by
# side. `!python` and run() in the notebook find this environment's Python, as Colab's find its own.
COLAB_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) $(PYTHON))
COLAB_VENV := .venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python

$(COLAB_VENV)/.installed: requirements-colab.txt
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install --quiet --upgrade pip
	$(COLAB_PY) -m pip install --quiet -r requirements-colab.txt
	touch $@

test-colab: $(COLAB_VENV)/.installed
	rm -rf $(DEMO)-colab
	env -u TF_CPP_MIN_LOG_LEVEL $(MAKE) --no-print-directory demo-steps PY=$(COLAB_PY) DEMO=$(DEMO)-colab \
		2> $(DEMO)-colab.stderr || (cat $(DEMO)-colab.stderr; exit 1)
	@test ! -s $(DEMO)-colab.stderr || (echo "the demo wrote to stderr under Colab's versions:"; \
		cat $(DEMO)-colab.stderr; exit 1)
	$(COLAB_PY) -m pytest -p no:cacheprovider -n 2 -m colab tests/test_notebook_run.py

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf $(DEMO) $(DEMO)-colab $(DEMO)-colab.stderr .pytest_cache lr_find stats
