"""A package, so that pytest imports its conftest.py as `quality.conftest`: as a bare `conftest` it would
replace tests/conftest.py in sys.modules, and `from conftest import tiny_config` would fail in `make unit`."""
