"""The one error a tool raises to tell the model what went wrong.

A `ToolError` never ends the task: the tool dispatcher turns it into an error message in the tool's
result, and the model decides what to do next. Its text is written for the model: say what happened
and, where possible, what to do instead.
"""

from __future__ import annotations


class ToolError(Exception):
    """A tool call that could not be carried out; the message goes back to the model."""
