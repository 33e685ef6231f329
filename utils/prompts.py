"""pixray's prompt syntax (lesson 04): prompts separated by '|', each "text" or "text:weight".

    parse_prompts("a red circle:1 | a blue square:-0.5")
    -> [Prompt('a red circle', 1.0), Prompt('a blue square', -0.5)]

A negative weight pushes the image away from that prompt (utils.objective.prompt_loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Prompt:
    """One prompt: its text and its weight in the loss."""

    text: str
    weight: float = 1.0


def _parse_one(part: str) -> Prompt:
    """'text' or 'text:weight' (stripped, not empty) -> Prompt."""
    head, colon, tail = part.rpartition(":")
    if not colon:
        return Prompt(part)
    try:
        weight = float(tail)
    except ValueError:
        raise ValueError(
            f"Malformed prompt {part!r}: the part after the last ':' must be a number "
            f"(the prompt's weight), got {tail.strip()!r}. Write 'text:weight', "
            "e.g. 'a red circle:1' or 'a blue square:-0.5'."
        ) from None
    if ":" in head:
        raise ValueError(
            f"Malformed prompt {part!r}: only one ':weight' per prompt is allowed "
            "(pixray's ':stop' is not supported). Separate prompts with '|'."
        )
    if not math.isfinite(weight):
        raise ValueError(f"Prompt {part!r}: the weight must be a finite number.")
    if not head.strip():
        raise ValueError(f"Prompt {part!r} has a weight but no text.")
    return Prompt(head.strip(), weight)


def parse_prompts(prompts: str | Sequence[str | Prompt]) -> list[Prompt]:
    """Parse pixray's syntax ("a:1 | b:-0.5", or a list of such parts) into Prompts."""
    parts = prompts.split("|") if isinstance(prompts, str) else prompts
    out = [p if isinstance(p, Prompt) else _parse_one(p.strip()) for p in parts
           if isinstance(p, Prompt) or p.strip()]  # a stray '|' leaves an empty part
    if not out:
        raise ValueError("The prompt is empty: say what to draw, e.g. \"a red circle\".")
    if all(p.weight == 0 for p in out):
        raise ValueError(
            "Every prompt has weight 0: nothing to optimise. Give one a non-zero weight.")
    return out


def prompt_notes(clip, prompts: list[Prompt]) -> list[str]:
    """A note for each prompt longer than the CLIP reads (its tokenizer cuts it silently)."""
    notes = []
    for prompt in prompts:
        tokens = clip.tokenizer([prompt.text])  # (1, context_length), cut to fit
        if int(tokens[0, -1]) != 0:  # the last slot is used: the text filled or overflowed it
            words = prompt.text.split()
            notes.append(f"the prompt {' '.join(words[:6])!r}... ({len(words)} words) is longer "
                         f"than {clip.name} reads ({tokens.shape[1]} tokens): its end is ignored.")
    return notes
