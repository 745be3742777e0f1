"""Which OpenMM force becomes which term, and which term kind loads which class.

``BUILDERS`` maps an OpenMM force class name (``"HarmonicBondForce"``) to a function
``build(force, system) -> list[Term]``; ``TERM_KINDS`` maps a term's ``kind`` to its class for
loading saved force fields. Term modules fill both with the decorators below; ``build.py``
imports every term module explicitly, so the tables are complete whenever a force field is built
or loaded.
"""

from __future__ import annotations

from typing import Callable

BUILDERS: dict[str, Callable] = {}
TERM_KINDS: dict[str, type] = {}


def builds(*force_names: str) -> Callable:
    """Register ``fn(force, system) -> list[Term]`` as the builder of these OpenMM force types."""

    def register(fn: Callable) -> Callable:
        for name in force_names:
            if name in BUILDERS:
                raise RuntimeError(f"two builders registered for {name}")
            BUILDERS[name] = fn
        return fn

    return register


def term_kind(cls: type) -> type:
    """Class decorator: register a Term subclass under its ``kind`` for loading."""
    if not cls.kind or cls.kind in TERM_KINDS:
        raise RuntimeError(f"term kind {cls.kind!r} of {cls.__name__} is empty or taken")
    TERM_KINDS[cls.kind] = cls
    return cls
