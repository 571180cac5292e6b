# Two commands do everything on a fresh machine:
#   make demo   - set up .venv, then train + evaluate Tiny-DarkNet on the built-in demo data (CPU)
#   make test   - set up .venv, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(PY) train.py

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) outputs demo_data
