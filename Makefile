# Parameter Sharing — an interactive textbook.
#   make book   set up .venv, execute every chapter, build the website into _build/html
#   make test   set up .venv, then lint, unit tests, notebooks, site build and site checks
#   make lab    open the chapters in JupyterLab
#   make bench  time every chapter against an import-only floor
#   make evidence  run every chapter for BOOK_SEED 0-9 and write evidence/ledger.json
#                  (CHAPTERS="06 07" for some chapters only, SEEDS=0-19 for more seeds)
#   make strip  remove outputs from the committed notebooks
#   make student   the chapters without their solutions, in _build/student/chapters
#   make grade NOTEBOOK=path  check a student's filled-in notebook with the chapter's checks
#   make pdf    the PDF edition of the built site, in _build/pdf (and linked from the site)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: evidence evidence-check book test checks lab bench strip clean lint unit notebooks site check-site assets browser colab-check student grade pdf

$(STAMP): requirements.txt pyproject.toml
	@echo "== setting up $(VENV) from requirements.txt"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

assets:
	bash scripts/fetch_assets.sh

# The execution cache is keyed on each notebook's code only, and Sphinx re-reads only the pages
# whose files changed; when the library, its ledger or the requirements change, both are dropped
# so that every chapter is executed again, or the site would show old outputs.
LIBRARY_KEY := _build/.library-key
site: $(STAMP) assets
	@key=$$(find shared_lib -type f -not -path '*/__pycache__/*' | LC_ALL=C sort \
	  | xargs cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1); \
	if [ -d _build/.doctrees -o -d _build/.jupyter_cache ] \
	    && [ "$$(cat $(LIBRARY_KEY) 2>/dev/null)" != "$$key" ]; then \
	  echo "== shared_lib changed since the cached executions: every chapter runs again"; \
	  rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute; fi; \
	mkdir -p _build && echo "$$key" > $(LIBRARY_KEY).next
	@echo "== building the website (executes every chapter, cached)"
	$(BIN)/jupyter-book build . -W -n --keep-going
	mv $(LIBRARY_KEY).next $(LIBRARY_KEY)  # only a finished build counts as cached

book: site pdf
	@echo "The book is built: open $(CURDIR)/_build/html/index.html"

pdf: site browser
	$(BIN)/python scripts/pdf.py

student: $(STAMP)
	$(BIN)/python scripts/student_edition.py write --out _build/student

grade: $(STAMP)
	@test -n "$(NOTEBOOK)" || { echo "usage: make grade NOTEBOOK=path/to/notebook.ipynb"; exit 2; }
	$(BIN)/python scripts/student_edition.py grade "$(NOTEBOOK)"

lint: $(STAMP)
	$(BIN)/ruff check shared_lib tests scripts
	$(BIN)/ruff format --check shared_lib tests scripts
	$(BIN)/ruff check --select F,I chapters  # the notebooks: unused or repeated imports
	$(BIN)/ruff format --check chapters  # and their code formatted to 88 columns (chapters/ruff.toml)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/book -q
	@echo "== the docstring examples of shared_lib"
	$(BIN)/python -m pytest --doctest-modules shared_lib -q

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-sanitize-with tests/book/sanitize.cfg chapters -q -p no:cacheprovider

browser:
	@command -v chromium >/dev/null || { echo "== installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

check-site: site browser
	$(BIN)/python scripts/pdf.py
	$(BIN)/python -m pytest tests/site/test_site.py tests/site/test_browser.py tests/site/test_pdf.py -q

test:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory checks && \
	elapsed=$$(( $$(date +%s) - start )) && mkdir -p _build && \
	echo "$$elapsed" > _build/make-test-seconds.txt && \
	echo "make test: all checks passed in $$elapsed s"

colab-check: $(STAMP)
	$(BIN)/python -m pytest tests/site/test_colab_path.py -q

# The slow checks run side by side (two cores: nbval and the site build each execute every
# chapter on one thread); --output-sync keeps each check's log in one piece.
checks: lint unit
	$(MAKE) --no-print-directory --output-sync=target -j3 notebooks check-site colab-check

SEEDS ?= 0-9
CHAPTERS ?=
evidence: $(STAMP)
	$(BIN)/python scripts/evidence.py --seeds $(SEEDS) $(if $(CHAPTERS),--chapters $(CHAPTERS))

evidence-check: $(STAMP)
	$(BIN)/python scripts/evidence.py --check

lab: $(STAMP)
	$(BIN)/jupyter lab chapters

bench: $(STAMP)
	$(BIN)/python scripts/bench_chapters.py

strip: $(STAMP)
	$(BIN)/nbstripout --keep-id chapters/*.ipynb

clean:
	rm -rf _build book/_vendor
