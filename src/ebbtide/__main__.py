"""`python -m ebbtide`: the same as the `ebbtide` command."""

from ebbtide.cli.main import app

app()
