"""``python -m guardrail``: see :mod:`guardrail.cli`."""

from guardrail.cli import main

raise SystemExit(main())
