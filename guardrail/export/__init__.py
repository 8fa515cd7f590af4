"""Export guard models to other formats.

- :func:`export_gguf` (``python -m guardrail export gguf``): GGUF files for llama.cpp, the
  language model and (for vision-language guards) its mmproj, quantised. See
  :mod:`guardrail.export.gguf`.

Importing this package is cheap; the converter runs in its own process.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GGUFFiles", "QUANT_TYPES", "converter_source", "export_gguf", "find_gguf_files", "quantize_gguf"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from guardrail.export import gguf

        return getattr(gguf, name)
    raise AttributeError(f"module 'guardrail.export' has no attribute {name!r}")
