"""`python -m hpo` is the same as the `hpo` command."""

from hpo.cli import main

main()
