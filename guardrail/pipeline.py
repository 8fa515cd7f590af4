"""Deprecated module: the moderation pass is :mod:`guardrail.moderation` (``moderate`` is now
``moderation_pass``). Reading a name here still works, with a ``DeprecationWarning``.
"""

from guardrail._deprecated import moved

__getattr__ = moved(
    "guardrail.pipeline",
    {
        "moderate": "guardrail.moderation:moderation_pass",
        **{
            name: f"guardrail.moderation:{name}"
            for name in ("Failed", "GenerateCall", "ScoreCall", "Settings", "Work", "run_async", "run_sync")
        },
    },
)
