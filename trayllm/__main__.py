"""Run the CLI as ``python -m trayllm`` (how `trayllm up` starts a detached daemon)."""

from trayllm.cli import main

if __name__ == "__main__":
    main()
