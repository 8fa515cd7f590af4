"""Decoding for the llama.cpp backend: tokens evaluated on one llama.cpp context, logits copied
out, sampling, and the token-trie walk of fast mode (see ``docs/backends/llamacpp.md``)."""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from guardrail.backends.base import GenerationOptions
from guardrail.backends.scoring import TokenTrie
from guardrail.errors import BackendError

__all__ = ["Cancelled", "Decoder", "log_softmax", "sample", "trie_logprobs"]


class Cancelled(Exception):
    """The async caller went away (or the deadline passed): stop generating."""


class Decoder:
    """Sequence 0 of ``llama``'s context: evaluates tokens in batches of ``llama.n_batch``,
    copies logits out, and holds llama.cpp's greedy sampler with the ``banned`` tokens'
    logits at minus infinity. ``lc`` is the ``llama_cpp`` module, ``np`` numpy."""

    def __init__(self, lc: Any, np: Any, llama: Any, banned: Sequence[int]):
        self.lc, self.np, self.llama = lc, np, llama
        self.n_vocab = int(llama.n_vocab())
        self.n_batch = int(getattr(llama, "n_batch", 512))
        self.batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self.banned = np.array(list(banned), dtype=np.int64)
        self.greedy = self._greedy_sampler()  # llama.cpp's own: ban tokens, then argmax
        self._logit_buf = np.empty(self.n_vocab, dtype=np.float32)
        self._cancel: threading.Event | None = None  # the running async call's, while abortable
        self._abort_cb = lc.ggml_abort_callback(lambda _data: self.cancelled())

    def _greedy_sampler(self) -> Any:
        lc = self.lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if self.banned.size:
            bias = (lc.llama_logit_bias * int(self.banned.size))()
            for i, token in enumerate(self.banned.tolist()):
                bias[i].token, bias[i].bias = token, float("-inf")
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_logit_bias(self.n_vocab, len(bias), bias))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        return chain

    # ----------------------------------------------------------------------- context
    def clear(self) -> None:
        """Empty the context (the KV cache) before a new prompt."""
        lc = self.lc
        lc.llama_memory_clear(lc.llama_get_memory(self.llama.ctx), True)
        self.llama.n_tokens = 0  # the Llama object's own prompt cache no longer matches

    def rewind(self, pos: int) -> None:
        """Drop every cell from position ``pos`` on."""
        lc = self.lc
        lc.llama_memory_seq_rm(lc.llama_get_memory(self.llama.ctx), 0, pos, -1)

    @contextlib.contextmanager
    def abortable(self, cancel: threading.Event | None) -> Iterator[None]:
        """While inside, setting ``cancel`` stops a running decode (llama.cpp's abort callback),
        which then raises :class:`Cancelled`: a cancelled call stops inside a long prompt."""
        if cancel is None:
            yield
            return
        lc, ctx = self.lc, self.llama.ctx
        self._cancel = cancel
        lc.llama_set_abort_callback(ctx, self._abort_cb, None)
        try:
            yield
        finally:
            lc.llama_set_abort_callback(ctx, lc.ggml_abort_callback(), None)
            self._cancel = None

    def cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    # ------------------------------------------------------------------------ decode
    def _fill_batch(self, piece: Sequence[int], pos: int, *, all_logits: bool) -> None:
        """Load ``piece`` into the llama batch at positions ``pos``… of sequence 0."""
        batch = self.batch
        batch.n_tokens = len(piece)
        flag = 1 if all_logits else 0
        for i, tok in enumerate(piece):
            batch.token[i] = tok
            batch.pos[i] = pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = flag

    def decode(self, tokens: Sequence[int], pos: int, *, logits_last: bool) -> None:
        """Evaluate ``tokens`` from ``pos``, keeping the last token's logits when asked."""
        lc, batch = self.lc, self.batch
        for start in range(0, len(tokens), self.n_batch):
            piece = tokens[start : start + self.n_batch]
            self._fill_batch(piece, pos + start, all_logits=False)
            if logits_last and start + len(piece) == len(tokens):
                batch.logits[len(piece) - 1] = 1
            rc = lc.llama_decode(self.llama.ctx, batch)
            if rc != 0:
                if rc == 2 or self.cancelled():
                    raise Cancelled
                raise BackendError(f"llama_decode failed (code {rc})", retryable=False)

    def decode_all(self, tokens: Sequence[int], pos: int) -> list[Any]:
        """Evaluate ``tokens`` from ``pos`` and return the logits after each (copies)."""
        lc, np = self.lc, self.np
        out = []
        for start in range(0, len(tokens), self.n_batch):
            piece = tokens[start : start + self.n_batch]
            self._fill_batch(piece, pos + start, all_logits=True)
            rc = lc.llama_decode(self.llama.ctx, self.batch)
            if rc != 0:
                raise BackendError(f"llama_decode failed (code {rc})", retryable=False)
            for i in range(len(piece)):
                ptr = lc.llama_get_logits_ith(self.llama.ctx, i)
                row = np.empty(self.n_vocab, dtype=np.float32)
                ctypes.memmove(row.ctypes.data, ptr, row.nbytes)
                out.append(row)
        return out

    def logits(self) -> Any:
        """A copy of the last position's logits (float32, n_vocab)."""
        ptr = self.lc.llama_get_logits_ith(self.llama.ctx, -1)
        ctypes.memmove(self._logit_buf.ctypes.data, ptr, self._logit_buf.nbytes)
        return self._logit_buf.copy()

    def close(self) -> None:
        self.lc.llama_batch_free(self.batch)
        self.lc.llama_sampler_free(self.greedy)


def sample(np: Any, logits: Any, banned: Any, options: GenerationOptions, rng: Any) -> int:
    """Sample a token: temperature, then top-p (nucleus), ``banned`` tokens never."""
    if banned.size:
        logits[banned] = -np.inf
    scaled = logits.astype(np.float64) / options.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if options.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cum = np.cumsum(probs[order])
        keep = cum - probs[order] < options.top_p  # smallest set reaching top_p
        keep[0] = True
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def log_softmax(np: Any, logits: Any) -> Any:
    """Log-probabilities (float64) from one row of logits."""
    values = logits.astype(np.float64)
    top = values.max()
    return values - top - np.log(np.exp(values - top).sum())


def trie_logprobs(decoder: Decoder, trie: TokenTrie, pos: int) -> list[float]:
    """Each trie path's log-probability after the evaluated prompt (which ends at ``pos`` and
    whose last logits are the decoder's): every chain of tokens down to a branching point is
    evaluated in one call with all its logits kept, then dropped from the cache before the next
    branch. A leaf needs no call: its parent's logits give it."""
    np = decoder.np
    rows = {-1: log_softmax(np, decoder.logits())}  # node -> log-softmax of the logits after it
    children: dict[int, list[int]] = {}
    for node, parent in enumerate(trie.parents):
        children.setdefault(parent, []).append(node)

    def walk(node: int, pos: int) -> None:
        for child in children.get(node, []):
            if child not in children:
                continue  # a leaf: its probability comes from its parent's logits
            chain = [child]
            while len(children.get(chain[-1], [])) == 1 and children[chain[-1]][0] in children:
                chain.append(children[chain[-1]][0])
            decoder.rewind(pos)  # drop the previous branch
            for i, logits in enumerate(decoder.decode_all([trie.tokens[n] for n in chain], pos)):
                rows[chain[i]] = log_softmax(np, logits)
            walk(chain[-1], pos + len(chain))

    walk(-1, pos)
    return [float(sum(rows[trie.parents[n]][trie.tokens[n]] for n in path)) for path in trie.paths]
