"""The labelled set: `pairs.tsv`, one pair of last user messages per line.

The kind "same" marks a paraphrase (it should hit); any other kind marks a near-miss
(it must not) and names what differs: negation, number, year, size, unit, entity,
order ("X to Y" swapped), versus ("X than Y" swapped), antonym.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAIRS_FILE = Path(__file__).with_name("pairs.tsv")
PARAPHRASE = "same"


@dataclass(frozen=True)
class Pair:
    kind: str
    a: str
    b: str

    @property
    def paraphrase(self) -> bool:
        return self.kind == PARAPHRASE


def load(path: Path = PAIRS_FILE) -> list[Pair]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise ValueError(f"{path.name}:{number}: expected kind<TAB>a<TAB>b")
        pairs.append(Pair(*fields))
    return pairs
