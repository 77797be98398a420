# Two commands do all set-up on a fresh machine:
#   make run   - create .venv, install wildfer, run the main job (predict on a photo with the built-in model)
#   make test  - create .venv, install wildfer + train, test, docs and ray extras, run the test suite;
#                then the inference tests again in .venv-light, the light install (no torch, no matplotlib)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
LIGHT  ?= .venv-light
PHOTO  ?= $(shell $(BIN)/python -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))" 2>/dev/null)
OUT    ?= out

.PHONY: venv run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Dependencies are ranges in pyproject.toml; constraints.txt pins the exact versions tested.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[train,test,docs,ray]"
	touch $@

# The light install: `pip install wildfer` with no extras (inference on onnxruntime, no torch),
# plus what its tests need; remade when the package changes.
$(LIGHT)/.installed: pyproject.toml constraints.txt $(shell find src -type f -not -name '*.pyc' 2>/dev/null)
	rm -rf $(LIGHT)
	$(PYTHON) -m venv $(LIGHT)
	$(LIGHT)/bin/python -m pip install -q --upgrade pip
	$(LIGHT)/bin/python -m pip install -q -c constraints.txt . pytest httpx
	touch $@

venv: $(VENV)/.installed

# The main job: every face in a photo, with its expression, using the built-in default model.
# PHOTO defaults to the portrait that ships inside matplotlib; pass PHOTO=path/or/folder for your own.
run: venv
	$(BIN)/wildfer predict "$(PHOTO)" --annotate --out $(OUT) --json $(OUT)/predictions.json

test: venv $(LIGHT)/.installed
	$(BIN)/python -m pytest -q
	! $(LIGHT)/bin/python -c "import torch" 2>/dev/null
	! $(LIGHT)/bin/python -c "import matplotlib" 2>/dev/null
	WILDFER_TEST_PHOTO="$(PHOTO)" $(LIGHT)/bin/python -m pytest -q -p no:cacheprovider --noconftest tests/test_light_install.py

bench: venv
	for b in $$(grep -l -- '"--quick"' benchmarks/*.py); do OMP_NUM_THREADS=2 $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) $(LIGHT) $(OUT) .pytest_cache
