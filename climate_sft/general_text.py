"""Real English text nobody on this project wrote, present on every machine: the prose of the Python language
reference that CPython ships as `pydoc_data.topics` (the text `help("if")` prints), under the PSF licence
(https://docs.python.org/3/license.html), which allows redistribution. It is the default general text on which
`climate-sft eval` measures forgetting, and the source of the `general_passages` task. The topics are sampled by
a fixed seed, so every run on one Python version scores the same text.
"""

from __future__ import annotations

import hashlib
import random
from pydoc_data.topics import topics

from climate_sft.sources import Text

SOURCE = "the Python language reference (CPython's pydoc_data.topics, PSF licence)"
SEED = 0
# Topics of this many characters: long enough to be prose, short enough that five score in seconds on a CPU.
SHORTEST, LONGEST = 1000, 6000


def reference_topics(count: int | None = 5, seed: int = SEED) -> list[Text]:
    """`count` topics of the language reference (all that fit the length bounds when None), drawn by `seed`."""
    names = sorted(name for name, text in topics.items() if SHORTEST <= len(text) <= LONGEST)
    if count is not None:
        names = sorted(random.Random(seed).sample(names, min(count, len(names))))
    return [
        Text(
            source=f"pydoc_data.topics:{name}",
            kind="text",
            sha256=hashlib.sha256(topics[name].encode()).hexdigest(),
            text=topics[name].strip(),
            title=f"Python reference: {name}",
        )
        for name in names
    ]
