"""``python -m ventros_cli`` is the ``ventros`` command."""

from .main import app

app(prog_name="ventros")
