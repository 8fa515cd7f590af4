"""Every exception guardrail raises, in one place.

The hierarchy::

    GuardrailError                      root: catch this to catch everything from guardrail
    ├── ConfigurationError (ValueError) a mistake in how the guard was set up
    │   ├── MissingDependencyError (ImportError)
    │   │                               an optional extra is not installed; names the extra
    │   ├── UnsupportedError            the backend cannot do what was asked (fast mode on a
    │   │                               backend or endpoint that gives no log-probabilities)
    │   └── HubError                    a Hugging Face Hub repo, file or upload failed: no match or
    │                                   several for a glob, offline and not cached, not found, auth;
    │                                   `reason`, `repo_id` and `candidates` say which
    ├── DataError (ValueError)          a data file cannot be used; training loaders list the bad rows
    │   ├── FormatError                 a text is not in the guard's format (``Human user:`` text,
    │   │                               answer block) or has a label outside a task's vocabulary;
    │   │                               raised by the profiles' readers, reported by the loaders
    │   │                               with the file and row
    │   └── DatasetError                evaluation data is unusable (malformed file, unknown label);
    │       │                           `path` and `line` say where
    │       └── PredictionsError        a predictions file given to `guardrail.eval score/report`
    ├── InputError (ValueError)         the request itself is unusable; never reaches the model
    │   ├── ImageError                  undecodable, truncated, unsupported or disallowed image
    │   │   └── ImageTooLargeError      over the byte or pixel limit (decompression bombs)
    │   ├── MediaError                  an unusable video or audio clip (corrupt, truncated, empty,
    │   │   │                           unsupported codec, a header that lies); `guardrail.media`
    │   │   └── MediaTooLargeError      over a video/audio limit (bytes, seconds, frames, pixels)
    │   ├── TooManyImagesError          more images than `InputLimits.max_images`
    │   ├── UncheckableContentError     content an integration found but cannot check (audio,
    │   │                               video, unknown binary); `where` names the argument
    │   └── TextTooLongError            text over `InputLimits.max_text_chars`
    ├── BackendError                    the model backend failed; `retryable` says if a retry may help
    │   ├── BackendTimeoutError         the backend did not answer in time
    │   └── BackendUnavailableError     the backend cannot be reached or is not loaded
    ├── ParseError                      the model output carries no usable verdict (policy "raise")
    ├── ExportError                     converting or quantising a model (GGUF export) failed
    ├── TrainingError                   a training stage stopped: the model's outputs are unusable
    │                                   (parse rate or format reward under the stage's threshold)
    └── GuardViolation                  raised by integrations when content is blocked; has `.verdict`

Third-party exceptions are translated into these at the boundary where they occur (the backend
modules), chained with ``raise ... from exc``; anything not recognised is re-raised unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.verdict import Verdict

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ConfigurationError",
    "DatasetError",
    "DataError",
    "ExportError",
    "FormatError",
    "GuardViolation",
    "GuardrailError",
    "HubError",
    "ImageError",
    "ImageTooLargeError",
    "InputError",
    "MediaError",
    "MediaTooLargeError",
    "MissingDependencyError",
    "ParseError",
    "PredictionsError",
    "TextTooLongError",
    "TooManyImagesError",
    "TrainingError",
    "UncheckableContentError",
    "UnsupportedError",
]


class GuardrailError(Exception):
    """Root of every error raised by guardrail."""


class ConfigurationError(GuardrailError, ValueError):
    """The guard, a backend or a profile was configured wrongly (bad option, unknown name)."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is missing. The message names the pip extra that provides it."""

    def __init__(self, package: str, extra: str, feature: str | None = None):
        self.package = package
        self.extra = extra
        what = feature or "this feature"
        super().__init__(
            f"{what} needs the '{package}' package, which is not installed. "
            f'Install it with: pip install "guardrail-vl[{extra}]"'
        )


class UnsupportedError(ConfigurationError):
    """The backend cannot do what was asked, e.g. ``mode="fast"`` on a backend (or an endpoint)
    that returns no token log-probabilities. Raised whatever the failure policy: it is a setup
    mistake, not a failure of one check."""


class HubError(ConfigurationError):
    """A model repository on the Hugging Face Hub (or its local cache) could not be used, or an
    upload to it failed.

    ``reason`` is one of ``"no_match"`` (a file pattern matched nothing), ``"ambiguous"`` (it
    matched several files), ``"not_cached"`` (offline, and the repo or revision is not in the
    cache), ``"not_found"`` (no such repo, revision or file), ``"auth"`` (missing or rejected
    token, gated repo), ``"unreachable"`` (the Hub could not be reached) or ``"http"`` (another
    error from the Hub). ``candidates`` lists the files a pattern was matched against (the
    nearest ones, for ``no_match``; the matches, for ``ambiguous``).
    """

    def __init__(
        self, message: str, *, reason: str, repo_id: str | None = None, candidates: tuple[str, ...] = ()
    ):
        super().__init__(message)
        self.reason = reason
        self.repo_id = repo_id
        self.candidates = tuple(candidates)


class DataError(GuardrailError, ValueError):
    """A data file cannot be used: unreadable, or rows that fail validation (``on_bad_row="fail"``).

    ``issues`` lists the bad rows (objects with ``path``, ``row`` (1-based) and ``reason``).
    """

    def __init__(self, message: str, *, issues: tuple[Any, ...] = ()):
        super().__init__(message)
        self.issues = issues


class FormatError(DataError):
    """A text does not follow the guard model's format: a user text that is not
    ``Human user:\n...\n\nAI assistant:\n...``, or a label outside a task's vocabulary.

    Raised by the readers in :mod:`guardrail.profiles`; the training and evaluation loaders turn
    it into a bad row or a :class:`DatasetError` naming the file and line.
    """


class InputError(GuardrailError, ValueError):
    """The request cannot be moderated as given (empty, wrong type, bad image, over a limit).

    Input errors are raised before anything reaches the model and are never turned into a
    verdict by the failure policy: the caller sent something unusable and must be told.
    """


class ImageError(InputError):
    """An image could not be used: undecodable, truncated, unsupported format or source."""


class ImageTooLargeError(ImageError):
    """An image is over the configured byte or pixel limit."""


class MediaError(InputError):
    """A video or audio clip could not be used: undecodable, truncated, zero-length, an
    unsupported codec or source, or a container whose header disagrees with its content."""


class MediaTooLargeError(MediaError):
    """A video or audio clip is over a configured limit (bytes, duration, frames, pixels per
    frame, count per request)."""


class TooManyImagesError(InputError):
    """A request carries more images than the configured limit."""


class TextTooLongError(InputError):
    """A text is longer than the configured limit."""


class UncheckableContentError(InputError):
    """An integration found content in a handler's arguments (or a chain's input) that the guard
    cannot check: audio, video, a document, unknown binary data, a file object holding no image.
    Raised before the handler runs, so nothing the guard did not see passes. ``where`` names the
    argument or field (``"body.attachments[1]"``) and ``kind`` what was found (``"audio (WAV)"``).
    """

    def __init__(self, message: str, *, where: str = "", kind: str = ""):
        super().__init__(message)
        self.where = where
        self.kind = kind


class BackendError(GuardrailError):
    """The backend failed to produce an output.

    ``retryable`` is True when the same call may succeed later (timeouts, overload, connection
    errors) and False when it will not (a bad model path, a rejected request).
    """

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class BackendTimeoutError(BackendError):
    """The backend did not answer within its timeout."""

    def __init__(self, message: str = "backend timed out", *, retryable: bool = True):
        super().__init__(message, retryable=retryable)


class BackendUnavailableError(BackendError):
    """The backend cannot be reached (connection refused, server down, model not loaded)."""

    def __init__(self, message: str = "backend unavailable", *, retryable: bool = True):
        super().__init__(message, retryable=retryable)


class ParseError(GuardrailError):
    """The model output has no parsable verdict and the parse-error policy is ``"raise"``."""

    def __init__(self, message: str, *, raw_output: str, verdict: Verdict | None = None):
        super().__init__(message)
        self.raw_output = raw_output
        self.verdict = verdict


class ExportError(GuardrailError):
    """Exporting a model failed: the converter or the quantiser reported an error, or the
    converter's source could not be obtained. The message carries the tool's own output."""


class TrainingError(GuardrailError):
    """A training stage stopped on purpose: the model's outputs were unusable (below the stage's
    ``min_parse_rate`` or ``min_format_reward`` with ``on_unusable_output: stop``). The message
    says what was measured and what to do."""


class GuardViolation(GuardrailError):
    """Content was blocked by the guard. ``verdict`` holds the decision that blocked it;
    ``categories`` the codes of the violated policy categories (empty when the guard names none)."""

    def __init__(self, verdict: Verdict, message: str | None = None, *, stage: str | None = None):
        self.verdict = verdict
        self.stage = stage
        self.categories: tuple[str, ...] = tuple(getattr(verdict, "categories", ()) or ())
        super().__init__(message or _violation_message(verdict, stage))


class DatasetError(DataError):
    """A benchmark file cannot be used: malformed, or a label the evaluation does not know.

    ``path`` is the file and ``line`` the 1-based line (JSONL, CSV) or item (JSON list) at fault,
    when known; both are part of the message.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = path or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)


class PredictionsError(DatasetError):
    """A predictions file (``guardrail.eval score``/``report`` input) is malformed or cannot be
    scored under the chosen protocol."""


def _violation_message(verdict: Any, stage: str | None) -> str:
    where = f"{stage} " if stage else ""
    if getattr(verdict, "decided_by", "model") == "policy":
        return f"{where}blocked by failure policy: {verdict.error}"
    parts = []
    if verdict.request_harmful:
        parts.append("request harmful")
    if verdict.response_harmful:
        parts.append("response harmful")
    categories = getattr(verdict, "categories", ())
    if categories:
        parts.append("categories " + ", ".join(categories))
    return f"{where}blocked by guard: " + (", ".join(parts) or "harmful")
