"""The ``ventros`` command line (typer + rich). Entry point: ``ventros_cli.main:app``."""
