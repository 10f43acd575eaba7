"""``python -m airtrain.scaffold sample.csv --name <name> --target <column>`` (``make new-pipeline``)."""

from airtrain.scaffold.build import main

raise SystemExit(main())
