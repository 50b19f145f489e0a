"""Prompt templates and the backtranslation output cleaner: each failure mode ends with its own reason."""

from __future__ import annotations

import pytest

from backforth.udfs import parsing
from backforth.udfs.parsing import clean_instruction
from backforth.udfs.prompts import load_prompt

DOC = (
    "To repot a cactus, wear thick gloves, loosen the soil around the root ball, lift the plant out with folded "
    "newspaper, shake off the old soil and set it in a pot one size larger filled with gritty cactus mix. Wait a "
    "week before watering so damaged roots can heal."
)
PROMPT = load_prompt("backtranslate")
ECHO_SOURCE = f"{PROMPT.system}\n{PROMPT.user}"


def test_template_renders_messages_and_hash_tracks_content() -> None:
    messages = PROMPT.render(document="some text")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "some text" in messages[1]["content"] and "{{" not in messages[1]["content"]
    assert PROMPT.variables == ["document"]
    with pytest.raises(KeyError, match="document"):
        PROMPT.render()
    from dataclasses import replace

    assert replace(PROMPT, user=PROMPT.user + " ").content_hash() != PROMPT.content_hash()
    assert replace(PROMPT, description="other").content_hash() == PROMPT.content_hash()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("How do I repot a cactus without hurting myself?", "How do I repot a cactus without hurting myself?"),
        ("Instruction: How do I repot a cactus?", "How do I repot a cactus?"),
        ("**Question:** How do I repot a cactus safely?", "How do I repot a cactus safely?"),
        ('Sure! Here is the request:\n\n"How should I repot a cactus?"', "How should I repot a cactus?"),
        (
            "Explain how to repot a cactus.\n\nThis text answers it because it lists steps.",
            "Explain how to repot a cactus.",
        ),
        (
            "The user most likely asked “What is the safest way to move a cactus to a bigger pot?” and the reply "
            "walks through gloves, soil and watering, which covers every part of that request in detail and more",
            "What is the safest way to move a cactus to a bigger pot?",
        ),
    ],
)
def test_wrappers_are_stripped(raw: str, expected: str) -> None:
    assert clean_instruction(raw, DOC, ECHO_SOURCE) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "finish", "reason"),
    [
        ("", "stop", parsing.EMPTY),
        ("   \n ", "stop", parsing.EMPTY),
        ("How do I repot a cactus and what soil should I", "length", parsing.TRUNCATED),
        ("I'm sorry, but I cannot help with that.", "stop", parsing.REFUSAL),
        ("Instruction: As an AI I do not write requests.", "stop", parsing.REFUSAL),
        ("Repot?", "stop", parsing.TOO_SHORT),
        (
            "Suppose this text was written as the reply to a request someone typed to an AI assistant.",
            "stop",
            parsing.PROMPT_ECHO,
        ),
        (
            "loosen the soil around the root ball, lift the plant out with folded newspaper, shake off the old soil",
            "stop",
            parsing.DOCUMENT_COPY,
        ),
        ("Explain " + "cactus care in detail " * 40, "stop", parsing.TOO_LONG),
        ("This text describes how to move a cactus into a bigger pot.", "stop", parsing.DESCRIBES_TEXT),
        ("The request was about gloves and gritty soil for cacti.", "stop", parsing.DESCRIBES_TEXT),
    ],
)
def test_bad_outputs_get_named_reasons(raw: str, finish: str, reason: str) -> None:
    assert clean_instruction(raw, DOC, ECHO_SOURCE, finish) == (None, reason)


def test_short_title_like_overlap_is_not_a_copy() -> None:
    # sharing a few words with the document is what a good instruction does
    assert clean_instruction("How do I repot a cactus with gritty cactus mix?", DOC, ECHO_SOURCE)[1] is None
    # a question about "the text" is still a question
    assert clean_instruction("The text mentions gritty mix: what is it made of?", DOC, ECHO_SOURCE)[1] is None
