"""The project's error types: every user-facing failure is one of these, printed as one line by the CLI."""

from __future__ import annotations


class YamlllmError(Exception):
    """Base class. ``str(err)`` is the one line shown to the user."""


class SpecError(YamlllmError):
    """The YAML file or spec is invalid; the message starts with the file or key path."""


class BuildError(YamlllmError):
    """The spec is valid but this build cannot proceed (output folder, memory, disk, target)."""


class FolderError(YamlllmError):
    """A model folder is not as its build left it (a file changed or missing), or reads data from outside itself."""


class GenerationError(YamlllmError):
    """A model folder cannot generate as asked (missing tokenizer, bad prompt ids, unusable EP)."""
