# vggbook: `make book` renders the book, `make test` validates it. Both set everything up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHAPTERS := $(sort $(wildcard book/[0-9]*.ipynb))
EXECUTED := _build/executed
NBVAL := --nbval --nbval-sanitize-with book/nbval-sanitize.cfg --nbval-kernel-name python3

.PHONY: venv data book execute outputs study html site test unit nbval browser lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[book,test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (vggbook)"
	touch $@

data: venv
	bash scripts/fetch_data.sh $(BIN)/python

# Execute every chapter on its defaults into _build/executed (the committed notebooks are left
# untouched), then render the HTML book from those copies into _build/html.
book: execute html

execute: venv data
	rm -rf $(EXECUTED) && mkdir -p $(EXECUTED)/book
	cp _config.yml _toc.yml references.bib $(EXECUTED)/
	cp book/*.md $(EXECUTED)/book/
	cp -r book/_ext $(EXECUTED)/book/
	for nb in $(CHAPTERS); do \
	  $(BIN)/papermill --cwd book -k python3 --log-level WARNING $$nb $(EXECUTED)/$$nb || exit 1; \
	done

html: venv
	$(BIN)/jupyter-book build $(EXECUTED) --path-output . -W --keep-going
	@echo "Open _build/html/index.html"

# The book rendered from the committed notebooks (no execution): what the browser test reads.
site: venv
	$(BIN)/jupyter-book build . --path-output _build/site -W --keep-going -q

# Re-execute the chapters in place: refresh the outputs committed with them (a deliberate act).
outputs: venv data
	for nb in $(CHAPTERS); do $(BIN)/papermill --cwd book -k python3 $$nb $$nb || exit 1; done
	$(BIN)/nbstripout --keep-output --keep-count --keep-id $(CHAPTERS)

# The study's runs (chapter 6; their hours are in the README); recorded runs are skipped. Then the
# witness, on the CPU (GPUs hidden): the test suite retrains it to show the records are current.
study: venv data
	$(BIN)/python -m vggbook study
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m vggbook study --witness

test: lint unit nbval browser

unit: venv data
	$(BIN)/pytest tests --ignore=tests/test_browser.py

nbval: venv data
	$(BIN)/pytest $(NBVAL) $(CHAPTERS)

# Every chapter in headless Chromium (skipped, saying why, when Chromium is absent).
browser: site
	VGGBOOK_SITE=_build/site/_build/html $(BIN)/pytest -rs tests/test_browser.py

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf _build runs .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
