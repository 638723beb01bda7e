# The two entry points the README promises; both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: demo test lint bench clean

$(BIN)/playbookd: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# One full cycle on freshly generated sample data, file transport; then show what was sent.
demo: $(BIN)/playbookd
	rm -rf $(DEMO)
	$(BIN)/playbookd init $(DEMO)
	cd $(DEMO) && ../$(BIN)/playbookd validate
	cd $(DEMO) && ../$(BIN)/playbookd run --once
	cd $(DEMO) && ../$(BIN)/playbookd status
	@echo; echo "Emails written to $(DEMO)/outbox/:"; ls $(DEMO)/outbox | head -20
	@echo "(... $$(ls $(DEMO)/outbox | wc -l) in all)"; echo
	@f=$$(ls $(DEMO)/outbox/*.eml | head -1); echo "== $$f"; sed -n '1,60p' "$$f"
	@# the web console: on in the demo only, with one operator whose password is generated here
	@sed -i.bak '/^console:/,$$ s/^  enabled: false/  enabled: true/' $(DEMO)/config.yaml && rm -f $(DEMO)/config.yaml.bak
	@pw=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))'); \
	  echo "$$pw" | (cd $(DEMO) && ../$(BIN)/playbookd console add-user demo --role operator --password-stdin) && \
	  echo "$$pw" > $(DEMO)/console-password.txt && chmod 600 $(DEMO)/console-password.txt && \
	  listen=$$(cd $(DEMO) && ../$(BIN)/python -c 'from playbookd.config.settings import load_config; print(load_config().http.listen)') && \
	  echo && echo "Web console: cd $(DEMO) && ../$(BIN)/playbookd run, then open http://$$listen/console/login as demo / $$pw" && \
	  echo "(the password is also in $(DEMO)/console-password.txt)"

lint: $(BIN)/playbookd
	$(BIN)/ruff check playbookd tests bench
	$(BIN)/mypy playbookd
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q -n 3 --dist worksteal --durations=25

bench: $(BIN)/playbookd
	$(BIN)/python bench/table.py

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info
