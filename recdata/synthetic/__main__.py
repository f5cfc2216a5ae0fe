"""`python -m recdata.synthetic --out synthetic.csv`: see recdata/synthetic/cli.py."""
from recdata.synthetic.cli import main

main()
