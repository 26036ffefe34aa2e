"""``python -m sgan_cli`` runs the CLI."""

from .cli import main

main()
