"""Evaluate a CRD's CEL rules (``x-kubernetes-validations``) with cel-python, as the API server would on create.

Scope, stated plainly:

* Rules that mention ``oldSelf`` are transition rules (they compare with the stored object on update); on create
  the API server skips them, so do we.
* A rule cel-python cannot parse, or whose evaluation raises (a Kubernetes-only CEL library function, say), is
  reported by :func:`unsupported_rules` rather than failing the object: a validator must not invent errors.
  Every rule in the shared CRDs parses today (``tests/kube/test_crds_cel.py`` checks this).
* ``messageExpression`` is not evaluated; the static ``message`` (or the rule text) is reported.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

log = logging.getLogger(__name__)

_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """One CEL rule that evaluated to false for an object node."""

    rule: str
    message: str
    field_path: str | None


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()


@functools.cache
def _program(rule: str) -> celpy.Runner | None:
    """The compiled rule, or None when cel-python cannot parse it (remembered in :func:`unsupported_rules`)."""
    env = _environment()
    try:
        return env.program(env.compile(rule))
    except (CELParseError, CELEvalError, ValueError, TypeError) as exc:
        _UNSUPPORTED.add(rule)
        log.debug("CEL rule not supported by cel-python (%s): %s", exc, rule)
        return None


_UNSUPPORTED: set[str] = set()


def unsupported_rules() -> frozenset[str]:
    """Rules seen so far that cel-python could not parse or evaluate (they were skipped, not failed)."""
    return frozenset(_UNSUPPORTED)


def is_transition_rule(rule: str) -> bool:
    return "oldSelf" in rule


def check(rules: list[dict[str, Any]], instance: Any) -> Iterator[RuleFailure]:
    """Evaluate every (non-transition) rule with ``self`` bound to ``instance``; yield the ones that are false."""
    value = None
    for spec in rules:
        rule = str(spec.get("rule", ""))
        if not rule or is_transition_rule(rule):
            continue
        with _LOCK:  # lark parsers and the cached programs are not documented as thread-safe
            program = _program(rule)
            if program is None:
                continue
            if value is None:
                value = json_to_cel(instance)
            try:
                result = program.evaluate({"self": value})
            except (CELEvalError, TypeError, ValueError, KeyError) as exc:
                _UNSUPPORTED.add(rule)
                log.debug("CEL rule could not be evaluated (%s): %s", exc, rule)
                continue
        if isinstance(result, CELEvalError):
            _UNSUPPORTED.add(rule)
            continue
        if not bool(result):
            message = str(spec.get("message") or f"failed rule: {rule}")
            yield RuleFailure(rule=rule, message=message, field_path=spec.get("fieldPath"))
