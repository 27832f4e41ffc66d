"""
Direct messages between nodes, several in one Redis message.

The messages one node sends another in one reactor turn travel together
(L{DirectBatch}), in their order, grouped in runs from one sender to one
recipient of one kind (a burst of lines from one client is one run). The
wire form is the runs' header as JSON, a newline, and the texts joined by
newlines:

    [["bob","alice",0,0,2],["carol","alice",1,0,1]]
    hi bob
    are you there?
    waves

so that a text is copied, never escaped: JSON-escaping every text cost a
microsecond a message (docs/performance.md, "Several nodes"). A text cannot
hold a newline (every front end splits lines there and refuses control
characters); should one ever, that batch carries its texts in the JSON
header instead, and is read the same.
"""

import json
from collections.abc import Iterator
from typing import Any

from chatroute.core.events import DirectMessage

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Run = tuple[str, str, bool, bool, list[str]]
"""A run: recipient, sender, action, notice, and the texts, in order."""


class DirectBatch:
    """
    Direct messages for one node, in the order they were added.

    @ivar count: how many messages it holds.
    """

    __slots__ = ("_last", "_runs", "count")

    def __init__(self) -> None:
        self._runs: list[list[Any]] = []
        self._last: list[Any] | None = None
        self.count = 0

    def add(self, to: str, message: DirectMessage) -> None:
        """Add C{message} for the user C{to}, after the others."""
        last = self._last
        sender = message.sender
        # Identity, not equality: the names of a burst are the same objects
        # (the presences' own), and a run split by mistake is still right.
        if (
            last is not None
            and last[1] is sender
            and last[0] is to
            and last[2] is message.action
            and last[3] is message.notice
        ):
            last[4].append(message.text)
        else:
            self._last = [to, sender, message.action, message.notice, [message.text]]
            self._runs.append(self._last)
        self.count += 1

    def messages(self) -> Iterator[tuple[str, DirectMessage]]:
        """Each message with its recipient, in order."""
        for to, sender, action, notice, texts in self._runs:
            for text in texts:
                yield to, DirectMessage(sender, text, action, notice)

    def encode(self) -> str:
        """The batch as one Redis message (see the module's docstring)."""
        runs = self._runs
        body = "\n".join([text for run in runs for text in run[4]])
        if body.count("\n") == self.count - 1:
            header = [[to, sender, int(a), int(n), len(texts)] for to, sender, a, n, texts in runs]
            return f"{_encode(header)}\n{body}"
        return _encode([[to, sender, int(a), int(n), texts] for to, sender, a, n, texts in runs])


def decode(payload: str) -> list[Run]:
    """
    The runs of a batch that L{DirectBatch.encode} made.

    @raise ValueError: C{payload} is not such a batch.
    """
    head, newline, body = payload.partition("\n")
    texts = body.split("\n") if newline else []
    position = 0
    runs: list[Run] = []
    try:
        for to, sender, action, notice, count_or_texts in json.loads(head):
            if isinstance(count_or_texts, int):
                taken = texts[position : position + count_or_texts]
                if len(taken) != count_or_texts:
                    raise ValueError("fewer texts than the header counts")
                position += count_or_texts
            elif isinstance(count_or_texts, list):
                taken = count_or_texts
                if not all(isinstance(text, str) for text in taken):
                    raise ValueError("a text that is not a string")
            else:
                raise ValueError("neither a count of texts nor the texts")
            if not (isinstance(to, str) and isinstance(sender, str)):
                raise ValueError("a recipient or sender that is not a name")
            runs.append((to, sender, bool(action), bool(notice), taken))
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a batch of direct messages: {error}") from None
    if position != len(texts):
        raise ValueError("more texts than the header counts")
    return runs
