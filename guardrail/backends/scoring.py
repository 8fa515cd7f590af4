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

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TokenTrie", "build_trie"]


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
