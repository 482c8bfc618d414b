"""The conformance checks, one module per area. Run them with ``ventros conformance`` or
``pytest -p ventros_conformance.plugin --pyargs ventros_conformance.checks --target HOST:PORT``."""
