"""`python -m sealkit ...`: the same command line as the `sealkit` console script."""

from sealkit.cli import main

if __name__ == "__main__":
    main()
