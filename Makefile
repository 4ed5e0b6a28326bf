# Two commands on a fresh machine: `make demo` and `make test`. Each sets up the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test serve bench definitions clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/healthtwin demo

# axe-core for the browser tests of the web pages (tests/web): from the npm registry, pinned by package-lock.json;
# skipped (the browser tests then skip, saying why) where npm is absent.
node_modules/.installed: package.json package-lock.json
	if command -v npm >/dev/null; then npm ci --ignore-scripts --no-audit --no-fund && touch $@; fi

test: $(STAMP) node_modules/.installed
	$(BIN)/pytest -n 2 --durations=30

serve: $(STAMP)
	$(BIN)/healthtwin serve

# Regenerates the committed definitions from the HL7 R4 package (npm pack hl7.fhir.r4.examples@4.0.1).
definitions: $(STAMP)
	$(BIN)/python scripts/gen_search_definitions.py
	$(BIN)/python scripts/gen_element_types.py
	$(BIN)/python scripts/gen_validation_definitions.py
	$(BIN)/python scripts/gen_terminology.py
	$(BIN)/python scripts/gen_xml_table.py
	$(BIN)/python scripts/gen_example_corpus.py

clean:
	rm -rf $(VENV) data build src/*.egg-info .pytest_cache
