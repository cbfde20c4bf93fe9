# geoservice: `make run` serves the city (the demo city in an empty database) on http://127.0.0.1:5000, `make test`
# runs the whole suite.
# Both install what is missing first (Debian/Ubuntu packages, the virtualenv, the front-end assets).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# What `make run` needs from the system (Chromium and the CJK fonts print the planner's coverage report as PDF — the
# browser the page tests drive), and what the tests need on top: ogr2ogr, a real OpenStreetMap extract far from
# both others the tests use (West Oakland, shipped as OSM XML by python-osmnx-doc; osmium-tool turns it into the
# .osm.pbf our importer reads), Caddy (the production layout's reverse proxy, deploy/Caddyfile, which the HTTPS and
# scale-out tests run), wrk (their load) and logrotate (tests/test_deploy.py rotates with deploy/logrotate).
RUN_PACKAGES := postgresql-15 postgresql-15-postgis-3 postgresql-15-pgrouting acl nodejs npm python3-venv chromium \
  fonts-noto-cjk
TEST_PACKAGES := $(RUN_PACKAGES) gdal-bin python-osmnx-doc osmium-tool caddy wrk logrotate

.PHONY: run test test-scale lint system-run system-test venv assets db demo serve clean-db

run: system-run venv assets db demo serve

test: system-test venv assets
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Opt-in: the OGC clients and the browser against a generated 1,000,000-point city (made once, about 4 minutes, in a
# database of its own; tests/test_scale_city.py).
test-scale: system-test venv assets
	$(BIN)/python -m pytest -m scale -p no:cacheprovider --timeout 3600

# Install only the missing packages; npm/nodejs/python3-venv are skipped when the tools are already there.
define install_missing
	@missing=""; \
	for p in $(1); do \
	  case $$p in \
	    nodejs) command -v node >/dev/null && continue ;; \
	    npm) command -v npm >/dev/null && continue ;; \
	    python3-venv) $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null && continue ;; \
	  esac; \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; \
	fi
endef

system-run:
	$(call install_missing,$(RUN_PACKAGES))

system-test:
	$(call install_missing,$(TEST_PACKAGES))

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,notebooks]'
	touch $@

# Leaflet and its plugins (locate control, Leaflet-Geoman for editing on the city map), MapLibre GL JS
# and its Leaflet binding (the city map's vector tiles; the CSP build with its worker as a file of ours) and ECharts
# (the planner's charts and the coverage report) come from the npm registry (exact versions in package.json) and are
# served from /static/vendor.
assets: static/vendor/.installed

static/vendor/.installed: package.json
	npm install --no-package-lock --no-audit --no-fund --silent
	rm -rf static/vendor && mkdir -p static/vendor/leaflet static/vendor/locatecontrol \
	  static/vendor/geoman static/vendor/echarts static/vendor/maplibre static/vendor/maplibre-gl-leaflet
	cp -r node_modules/leaflet/dist/. static/vendor/leaflet/
	cp -r node_modules/leaflet.locatecontrol/dist/. static/vendor/locatecontrol/
	cp -r node_modules/@geoman-io/leaflet-geoman-free/dist/. static/vendor/geoman/
	cp node_modules/echarts/dist/echarts.min.js static/vendor/echarts/
	cp -r node_modules/maplibre-gl/dist/. static/vendor/maplibre/
	cp node_modules/@maplibre/maplibre-gl-leaflet/dist/leaflet-maplibre-gl.js static/vendor/maplibre-gl-leaflet/
	touch $@

db: venv
	$(BIN)/geoservice db up

# `make run` serves whatever data is there: the demo city is loaded only into an empty database (`geoservice demo
# load --replace` replaces data with it, on purpose only).
demo: db
	$(BIN)/geoservice demo load --if-empty

serve:
	$(BIN)/geoservice serve --host $(HOST) --port $(PORT)

lint: venv
	$(BIN)/ruff check .

clean-db: venv
	-$(BIN)/geoservice db down
	rm -rf var/pg
