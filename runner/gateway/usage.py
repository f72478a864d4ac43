"""Token usage as the provider reports it, and an estimate for providers that do not.

OpenAI-compatible providers put `usage` on a whole response, and on the last chunk of a stream when
asked with `stream_options.include_usage` (the gateway always asks). Some compatible servers ignore
that option; then the gateway estimates at four characters per token, so budgets still hold, and the
transcript says the figure is an estimate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from runner.domain.models import TokenUsage

CHARS_PER_TOKEN = 4


def reported(usage: Any) -> TokenUsage | None:
    """The usage object of a response or chunk, or None when absent or malformed."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int) or isinstance(prompt, bool) \
            or isinstance(completion, bool) or prompt < 0 or completion < 0:
        return None
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, requests=1)


def estimated(request: Mapping[str, Any], message: Mapping[str, Any] | None) -> TokenUsage:
    prompt_chars = len(json.dumps(request.get("messages", []), ensure_ascii=False))
    if request.get("tools"):
        prompt_chars += len(json.dumps(request["tools"], ensure_ascii=False))
    completion_chars = len(json.dumps(message, ensure_ascii=False)) if message else 0
    return TokenUsage(prompt_tokens=math.ceil(prompt_chars / CHARS_PER_TOKEN),
                      completion_tokens=math.ceil(completion_chars / CHARS_PER_TOKEN), requests=1)
