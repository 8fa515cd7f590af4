"""Run llama-cpp-python's OpenAI-compatible server with the reference GuardReasoner-VL prompt.

llama-cpp-python's ``qwen2.5-vl`` chat handler renders its template with Jinja's default of
dropping the template's final newline, so its prompts end with ``<|im_start|>assistant``
instead of ``<|im_start|>assistant\\n``: not the prompt GuardReasoner-VL was trained on (the
guard's local backends and vLLM/SGLang render the newline). This launcher restores that one
character, then runs the stock server with the same arguments::

    python -m guardrail.integrations.llamacpp_server --model guard-q8_0.gguf \\
        --clip_model_path mmproj-guard-f16.gguf --chat_format qwen2.5-vl --n_ctx 8192 --port 8080

Needs ``pip install "llama-cpp-python[server]"``. The test suite starts it on 127.0.0.1 with the
tiny test guard and checks that the remote backend's outputs equal the local llama.cpp
backend's for the same inputs.
"""

from __future__ import annotations

from guardrail._deps import require

__all__ = ["main", "patch_qwen25vl_template"]

_NEWLINE = "{{ '\\n' }}"


def patch_qwen25vl_template() -> None:
    """Make the qwen2.5-vl handler's template end with a newline after the assistant cue."""
    fmt = require("llama_cpp.llama_chat_format", extra="llamacpp", package="llama-cpp-python")
    handler = fmt.Qwen25VLChatHandler
    template = handler.CHAT_FORMAT
    if template.endswith(_NEWLINE):
        return
    if not template.endswith("<|im_start|>assistant\n"):
        raise RuntimeError(
            "llama-cpp-python's qwen2.5-vl template changed; check that it renders "
            "'<|im_start|>assistant\\n' before using it for a guard"
        )
    handler.CHAT_FORMAT = template[:-1] + _NEWLINE


def main() -> None:
    patch_qwen25vl_template()
    server = require("llama_cpp.server.__main__", extra="llamacpp", package="llama-cpp-python[server]")
    server.main()


if __name__ == "__main__":
    main()
