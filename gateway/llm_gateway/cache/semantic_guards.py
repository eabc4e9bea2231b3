"""Guards for what sentence embeddings do not see: each refuses a semantic hit.

Measured on all-MiniLM-L6-v2 (bench/semantic): "convert Celsius to Fahrenheit" and
"Fahrenheit to Celsius" score 0.995, "is Python faster than Java" and its swap 0.99,
a negation ~0.95, another number ~0.85, while paraphrases score a median of 0.94. So
a similarity above the threshold is necessary, never sufficient: the candidate's last
user message and the request's must also agree on

- `numbers`: the same numbers (digits or number words) in the same order, each with
  the unit written after it ("10 km" is not "10 miles");
- `units`: the same units of measure, currencies and data sizes;
- `negation`: the same count of negations (not, no, never, without, n't, ...);
- `direction`: no word that is the source of a "from X"/"X to Y" in one text and
  the target in the other ("a string to an integer" vs "an integer to a string");
- `comparison`: no word on the left of a than/vs/versus/over in one text and on the
  right in the other ("Python faster than Java" vs "Java faster than Python");
- `opposites`: no word of an opposite pair (increase/decrease, encrypt/decrypt, ...)
  in one text met by its opposite alone in the other;
- `names`: every name (a word capitalized after the first word, or with digits or
  symbols in it, like C#, node.js, 7B) in one text appears in the other.

Each guard is a pure function of the two texts' `Features`, computed once per text
(the gateway stores a candidate's features beside its vector). `refusal(a, b)` names
the first guard that refuses, or None. What each catches and costs (paraphrases it
refuses) is measured by `python -m bench.semantic` on the labelled set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.#+'%$€£-]*|[$€£%]")
_TRAILING = ".,;:!?'\"-"

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
    "thousand": 1000, "million": 1000000, "billion": 1000000000, "dozen": 12,
}  # fmt: skip

# Each spelling of a unit -> one name ("km", "kilometre", "kilometers" -> "km").
_UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "km": ("km", "kms", "kilometer", "kilometre", "kilometers", "kilometres"),
    "m": ("meter", "metre", "meters", "metres"),
    "cm": ("cm", "centimeter", "centimetre", "centimeters", "centimetres"),
    "mm": ("mm", "millimeter", "millimetre", "millimeters", "millimetres"),
    "mile": ("mile", "miles", "mi"),
    "yard": ("yard", "yards", "yd", "yds"),
    "foot": ("foot", "feet", "ft"),
    "inch": ("inch", "inches"),
    "kg": ("kg", "kgs", "kilogram", "kilograms", "kilo", "kilos"),
    "g": ("gram", "grams"),
    "pound": ("pound", "pounds", "lb", "lbs", "£", "gbp"),
    "ounce": ("ounce", "ounces", "oz"),
    "ton": ("ton", "tons", "tonne", "tonnes"),
    "liter": ("liter", "litre", "liters", "litres"),
    "ml": ("ml", "milliliter", "millilitre", "milliliters", "millilitres"),
    "gallon": ("gallon", "gallons", "gal"),
    "cup": ("cup", "cups"),
    "teaspoon": ("teaspoon", "teaspoons", "tsp"),
    "tablespoon": ("tablespoon", "tablespoons", "tbsp"),
    "celsius": ("celsius", "centigrade"),
    "fahrenheit": ("fahrenheit",),
    "kelvin": ("kelvin",),
    "degree": ("degree", "degrees"),
    "second": ("second", "seconds", "sec", "secs"),
    "minute": ("minute", "minutes", "min", "mins"),
    "hour": ("hour", "hours", "hr", "hrs"),
    "day": ("day", "days"),
    "week": ("week", "weeks"),
    "month": ("month", "months"),
    "year": ("year", "years"),
    "bit": ("bit", "bits"),
    "byte": ("byte", "bytes"),
    "kb": ("kb", "kilobyte", "kilobytes", "kib"),
    "mb": ("mb", "megabyte", "megabytes", "mib"),
    "gb": ("gb", "gigabyte", "gigabytes", "gib"),
    "tb": ("tb", "terabyte", "terabytes", "tib"),
    "watt": ("w", "watt", "watts"),
    "volt": ("v", "volt", "volts"),
    "mph": ("mph",),
    "kph": ("kph", "km/h"),
    "pixel": ("pixel", "pixels", "px"),
    "percent": ("percent", "%"),
    "dollar": ("dollar", "dollars", "usd", "$"),
    "euro": ("euro", "euros", "eur", "€"),
    "yen": ("yen", "jpy"),
    "calorie": ("calorie", "calories", "kcal"),
    "b": ("b",),  # parameters: a "7B" model
}
UNITS = {spelling: unit for unit, names in _UNIT_SPELLINGS.items() for spelling in names}

NEGATIONS = frozenset(
    {"not", "no", "never", "without", "none", "nothing", "nobody", "neither", "nor", "cannot"}
)
# "X to Y": X is the source, Y the target; "from X": X is the source.
_TOWARDS = frozenset({"to", "into", "onto"})
_FROM = "from"
_COMPARE = frozenset({"than", "vs", "vs.", "versus", "over"})
# Words that carry no role of their own: articles, possessives, "this".
_SKIP = frozenset(
    {"a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that",
     "these", "those", "some", "me", "i", "it"}
)  # fmt: skip

# Opposite pairs; each side is a set of word forms; a line starting with a space
# continues the one before.
_OPPOSITES_TEXT = """
increase increases increasing increased | decrease decreases decreasing decreased
encrypt encrypts encrypting encrypted encryption | decrypt decrypts decrypting decrypted decryption
enable enables enabling enabled | disable disables disabling disabled
maximum max maximize largest biggest highest | minimum min minimize smallest lowest
upload uploads uploading uploaded | download downloads downloading downloaded
compress compresses compressing compressed compression |
 decompress decompresses decompressing decompressed decompression
zip zipping zipped | unzip unzipping unzipped
advantage advantages pros | disadvantage disadvantages cons drawbacks
install installs installing installed | uninstall uninstalls uninstalling uninstalled
ascending ascend | descending descend
add adds adding added | remove removes removing removed delete deletes deleting deleted
before | after
start starts starting started | stop stops stopping stopped
best | worst
better | worse
import imports importing imported | export exports exporting exported
serialize serializes serializing serialized serialization |
 deserialize deserializes deserializing deserialized deserialization
encode encodes encoding encoded | decode decodes decoding decoded
lose losing lost | gain gaining gained
more | less fewer
higher | lower
larger bigger | smaller
faster quicker | slower
cheaper | dearer
easier | harder
increase | reduce reduces reducing reduced
buy buying bought | sell selling sold
open opens opening opened | close closes closing closed
lock locks locking locked | unlock unlocks unlocking unlocked
mount mounts mounting mounted | unmount unmounts unmounting unmounted umount
show shows showing | hide hides hiding
include includes including included | exclude excludes excluding excluded
allow allows allowing allowed | deny denies denying denied block blocks blocking blocked
accept accepts accepting accepted | reject rejects rejecting rejected
connect connects connecting connected | disconnect disconnects disconnecting disconnected
push pushes pushing pushed | pull pulls pulling pulled
read reads reading | write writes writing wrote written
input inputs | output outputs
true | false
hot hotter | cold colder
public | private
synchronous sync | asynchronous async
left | right
first | last
above | below
inside | outside
win wins winning won | lose loses
safe safer | dangerous unsafe
healthy healthier | unhealthy
expand expands expanding expanded | collapse collapses collapsing collapsed
""".strip()


def _parse_opposites(text: str) -> tuple[tuple[frozenset[str], frozenset[str]], ...]:
    pairs = []
    for line in text.replace("\n ", " ").splitlines():
        left, right = line.split("|")
        pairs.append((frozenset(left.split()), frozenset(right.split())))
    return tuple(pairs)


OPPOSITES = _parse_opposites(_OPPOSITES_TEXT)


@dataclass(frozen=True)
class Features:
    """What the guards compare, computed once per text."""

    quantities: tuple[tuple[float, str], ...]
    units: frozenset[str]
    negations: int
    sources: frozenset[str]
    targets: frozenset[str]
    lefts: frozenset[str]
    rights: frozenset[str]
    words: frozenset[str]
    names: frozenset[str]


def tokens(text: str) -> list[tuple[str, bool]]:
    """(lowercased word, written capitalized?) pairs; "don't" -> "do", "not";
    "Australia's" -> "australia"; "800x600" -> "800", "600"; "3-day" -> "3", "day"."""
    out: list[tuple[str, bool]] = []
    for match in _WORD.finditer(text):
        raw = match.group(0).rstrip(_TRAILING) or match.group(0)
        for part in _split(raw):
            low = part.lower()
            if low.endswith("n't"):
                stem = {"can": "can", "won": "will", "shan": "shall"}.get(low[:-3], low[:-3])
                out.append((stem, False))
                out.append(("not", False))
                continue
            if low.endswith("'s"):
                part, low = part[:-2], low[:-2]
            if low:
                out.append((low, part[:1].isupper()))
    return out


def _split(raw: str) -> list[str]:
    # 800x600 -> 800, 600; 3-day -> 3, day; 15% -> 15, %; $20 -> $, 20; 7B stays (a name).
    if re.fullmatch(r"\d+x\d+", raw, re.IGNORECASE):
        return re.split(r"[xX]", raw)
    if re.fullmatch(r"\d+(?:\.\d+)?-[A-Za-z]+", raw):
        return raw.split("-", 1)
    if raw.endswith("%") and len(raw) > 1:
        return [raw[:-1], "%"]
    if raw[:1] in "$€£" and len(raw) > 1:
        return [raw[:1], raw[1:]]
    return [raw]


def _number(word: str) -> float | None:
    if word in NUMBER_WORDS:
        return float(NUMBER_WORDS[word])
    try:
        return float(word.replace(",", ""))
    except ValueError:
        pass
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", word)  # 7b, 10km, 64gb
    if match:
        return float(match.group(1))
    return None


def _attached_unit(word: str) -> str | None:
    match = re.fullmatch(r"\d+(?:\.\d+)?([a-z]+)", word)
    return UNITS.get(match.group(1)) if match else None


def features(text: str) -> Features:
    toks = tokens(text)
    words = [w for w, _ in toks]
    quantities: list[tuple[float, str]] = []
    units: set[str] = set()
    for i, word in enumerate(words):
        unit = UNITS.get(word) if len(word) > 1 or word in "$€£%" else None
        if unit is not None and word not in {"b", "w", "v"}:
            units.add(unit)
        value = _number(word)
        if value is None:
            continue
        after = _attached_unit(word)
        if after is None:
            # The unit written after a number ("10 km", "100 degrees Fahrenheit": the
            # first unit word among the next two words).
            for nxt in words[i + 1 : i + 3]:
                if nxt in UNITS:
                    after = UNITS[nxt]
                    break
        if after is not None:
            units.add(after)
        quantities.append((value, after or ""))
    sources, targets = _direction(words)
    lefts, rights = _comparison(words)
    return Features(
        quantities=tuple(quantities),
        units=frozenset(units),
        negations=sum(1 for w in words if w in NEGATIONS),
        sources=sources,
        targets=targets,
        lefts=lefts,
        rights=rights,
        words=frozenset(words),
        names=frozenset(_names(toks)),
    )


def _content_after(words: list[str], i: int) -> str | None:
    for word in words[i + 1 :]:
        if word not in _SKIP:
            return word
    return None


def _content_before(words: list[str], i: int) -> str | None:
    for word in reversed(words[:i]):
        if word not in _SKIP:
            return word
    return None


def _direction(words: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    sources: set[str] = set()
    targets: set[str] = set()
    for i, word in enumerate(words):
        if word == _FROM:
            after = _content_after(words, i)
            if after is not None:
                sources.add(after)
        elif word in _TOWARDS:
            before, after = _content_before(words, i), _content_after(words, i)
            if before is not None and before != after:
                sources.add(before)
            if after is not None:
                targets.add(after)
    # A word both source and target (two "to"s) says nothing about direction.
    both = sources & targets
    return frozenset(sources - both), frozenset(targets - both)


def _comparison(words: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    for i, word in enumerate(words):
        if word in _COMPARE:
            left = {w for w in words[:i] if w not in _SKIP}
            right = {w for w in words[i + 1 :] if w not in _SKIP}
            return frozenset(left - right), frozenset(right - left)
    return frozenset(), frozenset()


def _names(toks: list[tuple[str, bool]]) -> set[str]:
    names = set()
    for i, (word, capital) in enumerate(toks):
        symbolic = any(c in word for c in "#+.") and any(c.isalpha() for c in word)
        digits = any(c.isdigit() for c in word) and any(c.isalpha() for c in word)
        if (capital and i > 0 and word not in _SKIP) or symbolic or digits:
            names.add(word)
    return names


def _numbers(a: Features, b: Features) -> bool:
    return a.quantities != b.quantities


def _units(a: Features, b: Features) -> bool:
    return a.units != b.units


def _negation(a: Features, b: Features) -> bool:
    return a.negations != b.negations


def _direction_guard(a: Features, b: Features) -> bool:
    return bool(a.sources & b.targets) or bool(a.targets & b.sources)


def _comparison_guard(a: Features, b: Features) -> bool:
    return bool(a.lefts & b.rights) or bool(a.rights & b.lefts)


def _opposites(a: Features, b: Features) -> bool:
    for left, right in OPPOSITES:
        a_left, a_right = bool(a.words & left), bool(a.words & right)
        b_left, b_right = bool(b.words & left), bool(b.words & right)
        if (a_left and not a_right and b_right and not b_left) or (
            a_right and not a_left and b_left and not b_right
        ):
            return True
    return False


def _names_guard(a: Features, b: Features) -> bool:
    return not (a.names <= b.words and b.names <= a.words)


Guard = Callable[[Features, Features], bool]

GUARDS: dict[str, Guard] = {
    "numbers": _numbers,
    "units": _units,
    "negation": _negation,
    "direction": _direction_guard,
    "comparison": _comparison_guard,
    "opposites": _opposites,
    "names": _names_guard,
}


def refusal(a: Features, b: Features, guards: tuple[str, ...] | None = None) -> str | None:
    """The name of the first guard that refuses this pair as one question, or None."""
    for name in guards if guards is not None else tuple(GUARDS):
        if GUARDS[name](a, b):
            return name
    return None
