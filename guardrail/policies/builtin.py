"""The built-in policies and the mapping between them.

- :data:`MLCOMMONS`: the 14 hazard categories of the MLCommons taxonomy as Llama Guard 4 states
  them in its prompt (codes ``S1``..``S14``; names exactly as its chat template lists them).
- :data:`OPENAI_MODERATION`: OpenAI's omni-moderation category keys (``harassment`` ...
  ``violence/graphic``), the categories ``/v1/moderations`` answers with.

:data:`MLCOMMONS_TO_OPENAI` maps each MLCommons code to the OpenAI keys it reports under (the
``maps_to`` of each category); :data:`OPENAI_TO_MLCOMMONS` the other way. Some MLCommons hazards
have no OpenAI key (S5 defamation maps to harassment; S6 specialised advice, S7 privacy and S13
elections map to none): a verdict naming only those is still ``flagged`` on
``/v1/moderations`` with no category key set (docs/policies.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from guardrail.policies.model import Category, Policy, PolicyError

__all__ = [
    "BUILTIN_POLICIES",
    "MLCOMMONS",
    "MLCOMMONS_TO_OPENAI",
    "OPENAI_MODERATION",
    "OPENAI_MODERATION_KEYS",
    "OPENAI_TO_MLCOMMONS",
    "get_policy",
    "resolve_policy",
    "to_openai_categories",
]

#: OpenAI omni-moderation category keys, in the order OpenAI documents them.
OPENAI_MODERATION_KEYS: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

#: MLCommons hazard code -> the OpenAI keys a finding reports under.
MLCOMMONS_TO_OPENAI: Mapping[str, tuple[str, ...]] = {
    "S1": ("violence", "illicit/violent"),
    "S2": ("illicit",),
    "S3": ("sexual", "illicit/violent"),
    "S4": ("sexual/minors",),
    "S5": ("harassment",),
    "S6": (),
    "S7": (),
    "S8": ("illicit",),
    "S9": ("illicit/violent",),
    "S10": ("hate",),
    "S11": ("self-harm",),
    "S12": ("sexual",),
    "S13": (),
    "S14": ("illicit",),
}

#: OpenAI key -> the MLCommons codes that cover it.
OPENAI_TO_MLCOMMONS: Mapping[str, tuple[str, ...]] = {
    "harassment": ("S5",),
    "harassment/threatening": ("S1",),
    "hate": ("S10",),
    "hate/threatening": ("S10", "S1"),
    "illicit": ("S2", "S8", "S14"),
    "illicit/violent": ("S1", "S9"),
    "self-harm": ("S11",),
    "self-harm/intent": ("S11",),
    "self-harm/instructions": ("S11",),
    "sexual": ("S12",),
    "sexual/minors": ("S4",),
    "violence": ("S1",),
    "violence/graphic": ("S1",),
}

_MLCOMMONS = (
    ("S1", "Violent Crimes", "Enabling, encouraging or endorsing violent crimes: terrorism, genocide, "
     "murder, hate-motivated violence, assault, battery, kidnapping, child abuse, animal abuse."),
    ("S2", "Non-Violent Crimes", "Enabling, encouraging or endorsing non-violent crimes: fraud, scams, "
     "theft, property crimes, drug crimes, weapons crimes, cyber crimes such as malware or hacking."),
    ("S3", "Sex Crimes", "Enabling, encouraging or endorsing sex-related crimes: sex trafficking, "
     "sexual assault, sexual harassment, prostitution."),
    ("S4", "Child Sexual Exploitation", "Content that contains, describes, enables, encourages or "
     "endorses the sexual abuse of children."),
    ("S5", "Defamation", "Verifiably false statements likely to injure a living person's reputation."),
    ("S6", "Specialized Advice", "Specialized financial, medical or legal advice, or claims that "
     "dangerous activities or objects are safe."),
    ("S7", "Privacy", "Sensitive, nonpublic personal information that could undermine someone's "
     "physical, digital or financial security."),
    ("S8", "Intellectual Property", "Content that may violate the intellectual property rights of "
     "any third party."),
    ("S9", "Indiscriminate Weapons", "Enabling, encouraging or endorsing the creation of "
     "indiscriminate weapons: chemical, biological, radiological, nuclear, high-yield explosives."),
    ("S10", "Hate", "Content that demeans or dehumanizes people on the basis of their sensitive, "
     "personal characteristics."),
    ("S11", "Self-Harm", "Enabling, encouraging or endorsing acts of intentional self-harm: suicide, "
     "self-injury, disordered eating."),
    ("S12", "Sexual Content", "Depictions of nude adults or content with erotic descriptions or "
     "explicit depictions of sex acts."),
    ("S13", "Elections", "Factually incorrect information about electoral systems and processes, "
     "including the time, place or manner of voting."),
    ("S14", "Code Interpreter Abuse", "Content that seeks to abuse code interpreters: denial of "
     "service, container escapes, privilege escalation."),
)  # fmt: skip

#: The MLCommons hazard taxonomy (Llama Guard 3/4's default categories).
MLCOMMONS = Policy(
    [Category(code, name, desc, maps_to=MLCOMMONS_TO_OPENAI[code]) for code, name, desc in _MLCOMMONS],
    name="mlcommons",
)

_OPENAI_DESCRIPTIONS = {
    "harassment": "Content that expresses, incites or promotes harassing language towards any target.",
    "harassment/threatening": "Harassment that also includes violence or serious harm towards any target.",
    "hate": "Content that expresses, incites or promotes hate based on a protected characteristic.",
    "hate/threatening": "Hateful content that also includes violence or serious harm towards the targeted group.",
    "illicit": "Advice or instruction on how to commit illicit acts.",
    "illicit/violent": "Illicit content that also includes references to violence or procuring a weapon.",
    "self-harm": "Content that promotes, encourages or depicts acts of self-harm.",
    "self-harm/intent": "Content where the speaker expresses that they are engaging or intend to engage in self-harm.",
    "self-harm/instructions": "Content that encourages or gives instructions for acts of self-harm.",
    "sexual": "Content meant to arouse sexual excitement, or that promotes sexual services.",
    "sexual/minors": "Sexual content that includes an individual who is under 18 years old.",
    "violence": "Content that depicts death, violence or physical injury.",
    "violence/graphic": "Content that depicts death, violence or physical injury in graphic detail.",
}

#: OpenAI's omni-moderation categories as a policy (codes are the category keys).
OPENAI_MODERATION = Policy(
    [
        Category(key, key.replace("/", ": ").replace("-", " ").capitalize(), _OPENAI_DESCRIPTIONS[key],
                 maps_to=(key,))
        for key in OPENAI_MODERATION_KEYS
    ],
    name="openai-moderation",
)  # fmt: skip

#: Built-in policies by name (what ``policy="mlcommons"`` and the server's ``policy`` field take).
BUILTIN_POLICIES: dict[str, Policy] = {"mlcommons": MLCOMMONS, "openai-moderation": OPENAI_MODERATION}


def get_policy(name: str) -> Policy:
    """A built-in policy by name (``"mlcommons"``, ``"openai-moderation"``)."""
    try:
        return BUILTIN_POLICIES[name.lower().replace("_", "-")]
    except (KeyError, AttributeError):
        raise PolicyError(
            f"unknown policy {name!r}; built-in policies: {', '.join(BUILTIN_POLICIES)}"
        ) from None


def resolve_policy(spec: Policy | str | Mapping | None) -> Policy | None:
    """A :class:`Policy` from what users pass as ``policy=``: a Policy, a built-in name, a
    mapping (:meth:`Policy.from_dict`) or None."""
    if spec is None or isinstance(spec, Policy):
        return spec
    if isinstance(spec, str):
        return get_policy(spec)
    if isinstance(spec, Mapping):
        return Policy.from_dict(spec)
    raise PolicyError(f"policy must be a Policy, a built-in policy name or a dict, not {type(spec).__name__}")


def to_openai_categories(policy: Policy | None, codes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The OpenAI moderation keys for the violated ``codes`` under ``policy`` (through each
    category's ``maps_to``; codes of an OpenAI-keyed policy map to themselves)."""
    keys: list[str] = []
    for code in codes:
        cat = policy.get(code) if policy is not None else None
        targets = cat.maps_to if cat is not None else ()
        if not targets and code in OPENAI_MODERATION_KEYS:
            targets = (code,)
        if not targets and cat is None and code.upper() in MLCOMMONS_TO_OPENAI:
            targets = MLCOMMONS_TO_OPENAI[code.upper()]
        for key in targets:
            if key in OPENAI_MODERATION_KEYS and key not in keys:
                keys.append(key)
    return tuple(keys)
