"""What a policy is: harm categories with codes, names, descriptions and actions.

A :class:`Policy` says what a guard checks for and what the app does about each finding:

- a guard family that renders categories in its prompt (Llama Guard, gpt-oss-safeguard, a guard
  trained on your own policy) shows each category's ``code``, ``name`` and ``description``;
- the verdict names the violated categories by ``code``;
- ``action`` decides the verdict's ``allowed``: ``"block"`` (default) blocks, ``"flag"`` reports
  the category in the verdict and lets the content through.

Actions never change the prompt: two policies that differ only in actions render the same
prompt (:meth:`Policy.prompt_key`), so a guard trained on a policy accepts it with any actions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from guardrail.errors import ConfigurationError

__all__ = ["Action", "Category", "Policy", "PolicyError"]

Action = Literal["block", "flag"]
_ACTIONS = ("block", "flag")
# Codes appear in comma-separated answer lines ("Categories: S1, S9"): no spaces or commas.
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")
MAX_CATEGORIES = 64
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 4000


class PolicyError(ConfigurationError):
    """A policy is unusable: no categories, a duplicate or malformed code, an unknown action, a
    policy a guard family cannot take. The server answers it with HTTP 400."""


@dataclass(frozen=True)
class Category:
    """One harm category: ``Category("S9", "Indiscriminate Weapons", action="block")``.

    - ``code``: what the guard writes in its answer (``S1``, ``violence``, ``no_dosing``): letters,
      digits and ``_ . / -``, up to 64 characters, no spaces or commas.
    - ``name``: the short title a prompt shows (one line).
    - ``description``: what the category covers (families that render descriptions show it).
    - ``action``: ``"block"`` or ``"flag"`` (reported in the verdict, not blocked).
    - ``maps_to``: OpenAI moderation category keys this category reports under on
      ``/v1/moderations`` (the built-in policies fill it; see :mod:`guardrail.policies`).
    """

    code: str
    name: str
    description: str = ""
    action: Action = "block"
    maps_to: tuple[str, ...] = field(default=(), compare=True)

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _CODE.match(self.code):
            raise PolicyError(
                f"category code {self.code!r} is not usable: use letters, digits and _ . / - "
                "(no spaces or commas), at most 64 characters"
            )
        if not isinstance(self.name, str) or not self.name.strip() or "\n" in self.name:
            raise PolicyError(f"category {self.code}: the name must be a non-empty single line")
        if len(self.name) > MAX_NAME_CHARS:
            raise PolicyError(f"category {self.code}: the name is over {MAX_NAME_CHARS} characters")
        if not isinstance(self.description, str):
            raise PolicyError(f"category {self.code}: the description must be a string")
        if len(self.description) > MAX_DESCRIPTION_CHARS:
            raise PolicyError(f"category {self.code}: the description is over {MAX_DESCRIPTION_CHARS} characters")
        if self.action not in _ACTIONS:
            raise PolicyError(f"category {self.code}: action must be 'block' or 'flag', not {self.action!r}")
        maps = self.maps_to
        if isinstance(maps, str) or not all(isinstance(k, str) for k in maps):
            raise PolicyError(f"category {self.code}: maps_to must be a list of category keys")
        object.__setattr__(self, "maps_to", tuple(maps))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "name": self.name}
        if self.description:
            out["description"] = self.description
        out["action"] = self.action
        if self.maps_to:
            out["maps_to"] = list(self.maps_to)
        return out


@dataclass(frozen=True)
class Policy:
    """An ordered set of :class:`Category` (codes unique), optionally named.

    >>> p = Policy([Category("dosing", "Medical dosing advice", action="flag")], name="clinic")
    >>> p.codes, p.action("dosing"), p.blocks(["dosing"])
    (('dosing',), 'flag', False)
    """

    categories: tuple[Category, ...]
    name: str | None = None

    def __init__(self, categories: Iterable[Category], name: str | None = None):
        if isinstance(categories, (str, bytes, Mapping)):
            raise PolicyError("Policy takes a list of Category objects")
        cats = tuple(categories)
        if not cats:
            raise PolicyError("a policy needs at least one category")
        if len(cats) > MAX_CATEGORIES:
            raise PolicyError(f"a policy has at most {MAX_CATEGORIES} categories; got {len(cats)}")
        seen: set[str] = set()
        for c in cats:
            if not isinstance(c, Category):
                raise PolicyError(f"policy categories must be Category objects, not {type(c).__name__}")
            if c.code in seen:
                raise PolicyError(f"duplicate category code {c.code!r} in the policy")
            seen.add(c.code)
        if name is not None and (not isinstance(name, str) or "\n" in name):
            raise PolicyError("a policy name must be a single-line string")
        object.__setattr__(self, "categories", cats)
        object.__setattr__(self, "name", name)

    # ----------------------------------------------------------------------- reading
    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.categories)

    def get(self, code: str) -> Category | None:
        """The category with ``code`` (codes compare exactly, then case-insensitively), or None."""
        for c in self.categories:
            if c.code == code:
                return c
        low = code.lower()
        for c in self.categories:
            if c.code.lower() == low:
                return c
        return None

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.get(code) is not None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.categories)

    def __len__(self) -> int:
        return len(self.categories)

    def action(self, code: str) -> Action:
        """The action for ``code``; a code the policy does not have blocks (fail closed)."""
        c = self.get(code)
        return c.action if c is not None else "block"

    def blocks(self, codes: Sequence[str]) -> bool:
        """Whether a harmful verdict naming ``codes`` is blocked: any blocking (or unknown)
        category blocks; naming no category blocks (fail closed)."""
        return not codes or any(self.action(c) == "block" for c in codes)

    def unknown(self, codes: Sequence[str]) -> tuple[str, ...]:
        """The codes in ``codes`` that this policy does not have."""
        return tuple(c for c in codes if self.get(c) is None)

    def canonical(self, codes: Sequence[str]) -> tuple[str, ...]:
        """``codes`` spelled as in the policy (``s1`` -> ``S1``), unknown codes kept as given,
        duplicates dropped, order kept."""
        out: list[str] = []
        for code in codes:
            c = self.get(code)
            spelled = c.code if c is not None else code
            if spelled not in out:
                out.append(spelled)
        return tuple(out)

    # ---------------------------------------------------------------------- changing
    def with_actions(self, actions: Mapping[str, Action] | None = None, /, **by_code: Action) -> Policy:
        """A copy with some actions changed: ``MLCOMMONS.with_actions(S6="flag")``."""
        changes = {**dict(actions or {}), **by_code}
        missing = [code for code in changes if code not in self]
        if missing:
            raise PolicyError(f"the policy has no categories {', '.join(missing)}")
        cats = [replace(c, action=changes.get(c.code, c.action)) for c in self.categories]
        return Policy(cats, name=self.name)

    def select(self, codes: Iterable[str], *, name: str | None = None) -> Policy:
        """A policy with only the categories ``codes`` (in the policy's order)."""
        wanted = set(codes)
        missing = wanted - set(self.codes)
        if missing:
            raise PolicyError(f"the policy has no categories {', '.join(sorted(missing))}")
        return Policy([c for c in self.categories if c.code in wanted], name=name or self.name)

    # ------------------------------------------------------------------- identities
    def prompt_key(self) -> str:
        """A digest of what a prompt shows (codes, names, descriptions; not actions)."""
        data = [[c.code, c.name, c.description] for c in self.categories]
        return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()[:16]

    def key(self) -> str:
        """A digest of the whole policy, actions included (verdict-cache keys)."""
        data = [c.to_dict() for c in self.categories]
        return hashlib.sha256(json.dumps([self.name, data], ensure_ascii=False).encode()).hexdigest()[:16]

    def same_prompt(self, other: Policy) -> bool:
        return self.prompt_key() == other.prompt_key()

    # ------------------------------------------------------------------ files, dicts
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["categories"] = [c.to_dict() for c in self.categories]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Build a policy from ``{"name": ..., "categories": [{"code", "name", "description",
        "action", "maps_to"}, ...]}`` (raises :class:`PolicyError` with what is wrong)."""
        if not isinstance(data, Mapping):
            raise PolicyError(f"a policy must be a mapping with 'categories', not {type(data).__name__}")
        unknown = set(data) - {"name", "categories"}
        if unknown:
            raise PolicyError(f"unknown policy keys: {', '.join(sorted(map(str, unknown)))}")
        raw = data.get("categories")
        if not isinstance(raw, list):
            raise PolicyError("a policy needs 'categories': a list of {code, name, description, action}")
        cats = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping):
                raise PolicyError(f"categories[{i}] must be a mapping")
            extra = set(entry) - {"code", "name", "description", "action", "maps_to"}
            if extra:
                raise PolicyError(f"categories[{i}]: unknown keys {', '.join(sorted(map(str, extra)))}")
            if "code" not in entry or "name" not in entry:
                raise PolicyError(f"categories[{i}] needs 'code' and 'name'")
            code = entry["code"]
            cats.append(
                Category(
                    code=str(code) if isinstance(code, int) else code,
                    name=entry["name"],
                    description=entry.get("description") or "",
                    action=entry.get("action", "block"),
                    maps_to=tuple(entry.get("maps_to") or ()),
                )
            )
        return cls(cats, name=data.get("name"))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy file (YAML, or JSON, which YAML reads too); see :meth:`from_dict`."""
        import yaml  # a core dependency, imported only when a policy file is read
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {os.fspath(path)}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"policy file {os.fspath(path)} is not valid YAML: {exc}") from exc
        try:
            return cls.from_dict(data)
        except PolicyError as exc:
            raise PolicyError(f"policy file {os.fspath(path)}: {exc}") from exc

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The policy as YAML text (written to ``path`` when given)."""
        import yaml
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Policy({label}{len(self.categories)} categories: {', '.join(self.codes)})"
