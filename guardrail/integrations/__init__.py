"""Integrations that put a guard in front of (and behind) an app's model calls.

- :mod:`guardrail.integrations.decorator`: ``@guard.check`` for plain, async and streaming
  handlers (no extra needed).
- :mod:`guardrail.integrations.langchain`: ``guard.as_runnable()`` and ``guard.wrap(runnable)``
  for LangChain chains (``pip install "guardrail-vl[langchain]"``);
  :mod:`guardrail.integrations.langchain_inputs` says which parts of a chain's input are checked,
  :mod:`guardrail.integrations.langchain_tracing` how each check is traced.
- :mod:`guardrail.integrations.langchain_agents`: ``GuardrailMiddleware`` for LangChain v1
  agents (``create_agent``; ``pip install "guardrail-vl[langchain-agents]"``), imported from
  :mod:`guardrail.integrations.langchain` on demand.
- :mod:`guardrail.integrations.history`: an app's chat history handed to the guard as a
  conversation (docs/conversations.md).
- :mod:`guardrail.integrations.extract`: how requests and responses are found in the shapes
  apps use (OpenAI-style messages, LangChain messages, content blocks).
- :mod:`guardrail.integrations.streaming`: windowed checking of streamed output.
- :mod:`guardrail.integrations.policy`: which verdict blocks at the input and output stages.

Each integration marks its guard calls (:func:`guardrail.observers.called_by`), so the guard's
observers know the source and stage of every verdict. How to use them: docs/integrations.md.
Importing this package imports nothing heavy; the LangChain modules import ``langchain_core``.
"""
