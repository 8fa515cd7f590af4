"""Helpers for backends that score label continuations (fast mode). Pure: no model, no I/O.

Fast mode asks a backend for the log-probability of several continuations after one shared
prompt (``" harmful"``, ``" unharmful"``, or the joint request/response label lines). The
continuations share their first tokens more often than not, so backends put them in a token
trie: one node per distinct (parent, token) pair. A backend that supports custom attention masks
runs prompt + trie in one forward pass ("tree attention": each node sees the prompt and its own
ancestors); the others walk the trie with a KV cache. Either way the continuation's
log-probability is the sum over its nodes of log P(node token | prompt, ancestors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from guardrail.profiles.base import RenderedPrompt, merge_text

__all__ = ["TokenTrie", "build_trie", "continuation_trie", "forced_prompt"]

Encode = Callable[[str], Sequence[int]]


@dataclass(frozen=True)
class TokenTrie:
    """The continuations of one prompt as a token trie.

    ``tokens[n]``: the token of node ``n``; ``parents[n]``: its parent node, ``-1`` for the root
    (the last prompt token); ``depths[n]``: 1 for the root's children; ``paths[k]``: the nodes
    of continuation ``k`` in order. Parents always come before their children.

    >>> trie = build_trie([[5, 7], [5, 8], [9]])
    >>> trie.tokens, trie.parents, trie.depths, trie.paths
    ((5, 7, 8, 9), (-1, 0, 0, -1), (1, 2, 2, 1), ((0, 1), (0, 2), (3,)))
    """

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    depths: tuple[int, ...]
    paths: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.tokens)

    def ancestors(self, node: int) -> list[int]:
        """The node's ancestors, root side first (the node itself excluded)."""
        out = []
        parent = self.parents[node]
        while parent != -1:
            out.append(parent)
            parent = self.parents[parent]
        return out[::-1]


def build_trie(sequences: Sequence[Sequence[int]]) -> TokenTrie:
    """Merge token sequences that share a start into a :class:`TokenTrie`."""
    tokens: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    children: dict[tuple[int, int], int] = {}
    paths = []
    for seq in sequences:
        node, path = -1, []
        for token in seq:
            key = (node, int(token))
            child = children.get(key)
            if child is None:
                child = len(tokens)
                children[key] = child
                tokens.append(int(token))
                parents.append(node)
                depths.append(1 if node == -1 else depths[node] + 1)
            path.append(child)
            node = child
        paths.append(tuple(path))
    return TokenTrie(tuple(tokens), tuple(parents), tuple(depths), tuple(paths))


def forced_prompt(prompt: RenderedPrompt, prefix: str) -> RenderedPrompt:
    """``prompt`` followed by the forced answer start ``prefix`` (merged into its last text run)."""
    return dataclasses.replace(prompt, parts=tuple(merge_text([*prompt.parts, prefix])))


def continuation_trie(
    prompt: RenderedPrompt, continuations: Sequence[str], encode: Encode, encode_uncached: Encode
) -> TokenTrie:
    """The trie of each continuation's tokens as the model sees them after ``prompt``.

    A continuation is tokenized together with the text run it follows (the prompt's last part),
    as the model would have seen the whole answer, and the tokens after the run's own are kept;
    where the boundary merged into one token, it is tokenized apart instead. ``encode`` may
    cache: the run is the template's short answer start for chat profiles (the same every
    time), while raw-text profiles end with the whole prompt (unique: runs of 512 characters or
    more go through ``encode_uncached``, so they do not fill the cache).
    """
    parts = prompt.parts
    last = parts[-1] if parts and isinstance(parts[-1], str) else ""
    base = tuple(encode(last)) if last else ()
    joint_encode = encode if len(last) < 512 else encode_uncached
    sequences = []
    for continuation in continuations:
        joint = tuple(joint_encode(last + continuation))
        sequences.append(joint[len(base) :] if joint[: len(base)] == base else tuple(encode(continuation)))
    return build_trie(sequences)
