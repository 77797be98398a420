# Two commands do all set-up on a fresh machine:
#   make run   - create .venv, install wildfer, run the main job (predict on a photo with the built-in model)
#   make test  - create .venv, install wildfer + test, docs and ray extras, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
PHOTO  ?= $(shell $(BIN)/python -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))" 2>/dev/null)
OUT    ?= out

.PHONY: venv run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Dependencies are ranges in pyproject.toml; constraints.txt pins the exact versions tested.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,docs,ray]"
	touch $@

venv: $(VENV)/.installed

# The main job: every face in a photo, with its expression, using the built-in default model.
# PHOTO defaults to the portrait that ships inside matplotlib; pass PHOTO=path/or/folder for your own.
run: venv
	$(BIN)/wildfer predict "$(PHOTO)" --annotate --out $(OUT) --json $(OUT)/predictions.json

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	for b in $$(grep -l -- '"--quick"' benchmarks/*.py); do OMP_NUM_THREADS=2 $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
