"""Configuration dataclasses shared by the training commands (trl style, without the weight).

Every config is a dataclass whose fields carry their help text (``metadata["help"]``) and, where
the value is one of a few names, their ``choices``. ``__post_init__`` coerces values that come as
text (YAML scalars, command-line flags) to the field's type, checks choices, then calls
:meth:`Config.validate`: every mistake is a :class:`~guardrail.errors.ConfigurationError` raised
before any model or data set loads. Nothing here imports torch or TRL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, TypeVar, Union

from guardrail.errors import ConfigurationError

__all__ = ["Config", "option"]

C = TypeVar("C", bound="Config")


def option(
    default: Any = MISSING, help: str = "", *, choices: tuple[str, ...] | None = None, factory: Any = MISSING
) -> Any:  # noqa: A002
    """A dataclass field with help text (and the names it may take)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    """Base of the training configs: typed fields, checked when the object is built."""

    #: Name of the recipe section this config reads (``sft``, ``sample``...); used in messages.
    section: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            value = coerce(value, hints[f.name], f"{self.section}.{f.name}")
            choices = f.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:
                raise ConfigurationError(
                    f"{self.section}.{f.name} must be one of {', '.join(map(str, choices))}; got {value!r}"
                )
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Check values together; subclasses raise ConfigurationError. Runs in ``__post_init__``."""

    # ------------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None) -> C:
        """Build from a mapping (a YAML section); unknown keys are an error, not ignored."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) for {cls.section}: {', '.join(unknown)}. Known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    @classmethod
    def options(cls) -> list[tuple[str, Any, str, tuple[str, ...] | None, Any]]:
        """``(name, type, help, choices, default)`` of every field, in order (for CLIs and docs)."""
        hints = _hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = (
                f.default
                if f.default is not MISSING
                else (
                    f.default_factory() if f.default_factory is not MISSING else None  # type: ignore[misc]
                )
            )
            out.append(
                (f.name, hints[f.name], f.metadata.get("help", ""), f.metadata.get("choices"), default)
            )
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return tp, optional
    return tp, False


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (possibly text from a flag) to type ``tp``; raise ConfigurationError."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        return None  # required values are checked by validate(), with a better message
    if isinstance(value, str) and optional and value.strip().lower() in ("none", "null") and inner is not str:
        return None
    origin = typing.get_origin(inner)
    try:
        if inner is Any:
            return value
        if inner is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise TypeError
        if inner is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                return int(value.strip())
            raise TypeError
        if inner is float:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
            raise TypeError
        if inner is str:
            if isinstance(value, str):
                return value
            if isinstance(value, os.PathLike):
                return os.fspath(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise TypeError
        if origin is list or inner is list:
            (item_tp,) = typing.get_args(inner) or (Any,)
            if isinstance(value, str):
                value = _parse_list_text(value)
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [coerce(v, item_tp, where) for v in value]
        if origin is dict or inner is dict:
            if isinstance(value, str):
                value = json.loads(value) if value.strip() else {}
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if origin in (Union, types.UnionType):  # e.g. float | str: keep what was given
            return value
    except (TypeError, ValueError, json.JSONDecodeError):
        raise ConfigurationError(f"{where}: expected {_type_name(tp)}, got {value!r}") from None
    return value


def _parse_list_text(text: str) -> list[Any]:
    text = text.strip()
    if text.startswith("["):
        return list(json.loads(text))
    return [part.strip() for part in text.split(",") if part.strip()] if "," in text else [text]


def _type_name(tp: Any) -> str:
    inner, optional = _unwrap_optional(tp)
    name = getattr(inner, "__name__", None) or str(inner).replace("typing.", "")
    if typing.get_origin(inner) is list:
        name = f"a list of {_type_name(typing.get_args(inner)[0])}"
    return f"{name} or null" if optional else name
