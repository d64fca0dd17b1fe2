# `make study` and `make test` set everything up themselves: a virtual environment in .venv
# with requirements.txt, the offline data packages (Debian, when run as root with apt), the data.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_DATA := /usr/share/datasets/fashion-mnist /usr/share/doc/opencv-doc/examples/data/digits.png

.PHONY: setup data-packages browser-packages data study test lint bench

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV) || { apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@# the notebooks' kernel "python3" is this interpreter, registered inside .venv only (never user-wide)
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lthutils)" >/dev/null
	touch $(STAMP)

# Fashion-MNIST and digits5k offline: Debian's dataset-fashion-mnist and opencv-doc.
data-packages:
	@if ls $(DEBIAN_DATA) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			dataset-fashion-mnist opencv-doc >/dev/null; \
	else echo "note: not root or no apt-get: Debian data packages skipped; datasets will be downloaded"; fi

# Chromium for tests/test_browser.py (skipped, saying how to enable it, where it is missing).
browser-packages:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver >/dev/null; } || echo "note: chromium could not be installed: browser tests skipped"; \
	else echo "note: not root or no apt-get: chromium not installed: browser tests skipped"; fi

data: $(STAMP) data-packages
	$(PY) -m lthutils data

setup: $(STAMP) data

# The main job: the four questions' notebooks with the quick parameters, then the HTML report.
study: setup
	$(PY) -m lthutils run-all params/quick/
	$(PY) -m lthutils report

lint: $(STAMP)
	$(VENV)/bin/ruff check lthutils tests bench scripts
	$(VENV)/bin/ruff format --check lthutils tests bench scripts

test: setup lint browser-packages
	$(PY) -m pytest

bench: setup
	$(PY) bench/training_speed.py
	$(PY) bench/profile_step.py
	$(PY) bench/profile_step.py --precision bf16
	$(PY) bench/cluster_speed.py
	$(PY) bench/grouping_speed.py
	$(PY) bench/tracker_overhead.py
	$(PY) bench/stack_calibration.py
	$(PY) bench/profile_study.py params/full/
	$(PY) bench/eval_share.py exp_result
