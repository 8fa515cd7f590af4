"""The one vocabulary of field names the integrations read: ``@guard.check`` (parameters, request
bodies, return values) and the LangChain runnables (dict inputs and outputs) look up the same
names, so a body or a chain that works with one works with the other.

=================  ==========================================================================
table              names (in the order their texts are joined)
=================  ==========================================================================
REQUEST_FIELDS     messages, prompt, text, message, input, question, query
IMAGE_FIELDS       images, image
RESPONSE_FIELDS    content, answer, text, output, response, reply, completion, message
=================  ==========================================================================

Requests: **every** set request field is checked (texts joined by blank lines), with the images
of every image field; all other fields are searched for image content
(:mod:`guardrail.integrations.content`). Responses: a string, a chat completion (``choices``),
or a dict/object with any of the response fields (every one that is set is checked).

:data:`IMAGE_NAME_WORDS` are the words that make a field's name say "image": a URL or a path
found in such a field is an image source even without an image file extension.
"""

from __future__ import annotations

import re

__all__ = [
    "IMAGE_FIELDS",
    "IMAGE_NAME_WORDS",
    "REQUEST_FIELDS",
    "RESPONSE_FIELDS",
    "names_an_image",
]

#: Fields that hold the request: all of those set are checked, texts joined in this order.
REQUEST_FIELDS = ("messages", "prompt", "text", "message", "input", "question", "query")
#: Fields that hold images: all of those set are checked.
IMAGE_FIELDS = ("images", "image")
#: Fields of a dict or object response that hold its text (or a message): all set are checked.
RESPONSE_FIELDS = ("content", "answer", "text", "output", "response", "reply", "completion", "message")

#: Words (of a field name split at ``_``, ``-``, ``.`` and camelCase) that say "image here".
IMAGE_NAME_WORDS = frozenset(
    {
        "image",
        "img",
        "photo",
        "picture",
        "pic",
        "screenshot",
        "avatar",
        "thumbnail",
        "thumb",
        "attachment",
        "upload",
        "media",
        "file",
        "scan",
        "figure",
    }
)

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def names_an_image(name: str | None) -> bool:
    """Whether a field name says it holds an image (``photo``, ``image_url``, ``attachments``,
    ``userAvatar``...): one of its words, singular or plural, is in :data:`IMAGE_NAME_WORDS`."""
    if not name:
        return False
    for word in _WORD.findall(name):
        word = word.lower()
        if word in IMAGE_NAME_WORDS or (word.endswith("s") and word[:-1] in IMAGE_NAME_WORDS):
            return True
    return False
