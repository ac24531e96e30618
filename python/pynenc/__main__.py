"""`python -m pynenc`: the same as the `pynenc` command."""

from pynenc.cli import main

raise SystemExit(main())
