"""`python -m repro`: the same CLI as the `repro` command (and what torchrun starts)."""

from repro.cli import main

if __name__ == "__main__":
    main()
