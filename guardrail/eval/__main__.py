"""``python -m guardrail.eval``: see :mod:`guardrail.eval.cli`."""

from guardrail.eval.cli import main

raise SystemExit(main())
