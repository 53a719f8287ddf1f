# Two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check-config clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) exporter.py --demo --web.listen-address 127.0.0.1:10036

test: $(STAMP)
	$(PY) -m pytest -q

check-config: $(STAMP)
	$(PY) exporter.py --check-config --config.file config.yaml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
