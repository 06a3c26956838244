"""`python -m hpo` is the same as the `hpo` command."""

from hpo.entry import main

main()
