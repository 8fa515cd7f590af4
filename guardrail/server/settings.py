"""Server settings (no third-party imports)."""

from __future__ import annotations

from dataclasses import dataclass

from guardrail.errors import ConfigurationError

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """How the moderation server behaves.

    - ``api_key``: when set, every endpoint but ``/healthz`` and ``/readyz`` (``/docs`` and
      ``/openapi.json`` included) needs ``Authorization: Bearer <api_key>``; without it the
      answer is 401, before any of the body is read.
    - ``max_body_bytes``: larger request bodies get 413 before they are read in full.
    - ``body_timeout_s``: a body not received in full within this time gets 408 (slow clients
      cannot hold a connection open forever).
    - ``request_timeout_s``: a request whose guard call takes longer is decided by the guard's
      ``on_error`` policy (blocked by default, ``decided_by="policy"``); with ``on_error="raise"``
      the server answers 504.
    - ``max_concurrency``: guard calls running at once; ``max_queue``: requests allowed to wait
      for a slot. Beyond that the server answers 503 with ``Retry-After`` instead of queueing
      without bound. Admitted calls are gathered into backend batches by the guard's
      micro-batcher (which bounds the batch size and the batches in flight), so this is how
      many requests can share a batch, not how many model calls run.
    - ``max_inputs``: strings per ``/v1/moderations`` request.
    - ``model_name``: the model name reported in responses and verdicts (default: the guard's
      model name, or the last part of it when it is a local path, so that the deployment's
      layout is never shown).
    - ``allow_remote_images``: fetch ``http(s)`` image URLs sent by clients (off: only inline
      ``data:`` URLs are accepted). Fetches reach public addresses only, unless
      ``remote_allowed_networks`` (CIDR strings) opens others; see :mod:`guardrail.netfetch`.
    - ``max_pixels_in_flight``: decoded image pixels held by all requests at once; a request
      waits for room up to ``request_timeout_s`` (then 503).
    """

    api_key: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    request_timeout_s: float = 300.0
    max_concurrency: int = 32
    max_queue: int = 256
    retry_after_s: int = 1
    max_inputs: int = 64
    model_name: str | None = None
    body_timeout_s: float = 30.0
    allow_remote_images: bool = False
    remote_allowed_networks: tuple[str, ...] = ()
    max_pixels_in_flight: int = 100_000_000

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigurationError("max_body_bytes must be at least 1024")
        if self.request_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ConfigurationError("request_timeout_s and body_timeout_s must be > 0")
        if self.max_pixels_in_flight < 1:
            raise ConfigurationError("max_pixels_in_flight must be >= 1")
        if self.max_concurrency < 1 or self.max_queue < 0 or self.max_inputs < 1:
            raise ConfigurationError("max_concurrency and max_inputs must be >= 1, max_queue >= 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigurationError("api_key must not be empty")
