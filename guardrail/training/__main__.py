"""``python -m guardrail.training``: see :mod:`guardrail.training.cli`."""

from guardrail.training.cli import main

raise SystemExit(main())
