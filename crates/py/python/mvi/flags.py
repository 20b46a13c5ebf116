"""Feature flags: builders of the flag dicts ``mvi.Flags.save`` takes (the same JSON the Rust
``mvi::flags::Flag`` reads and writes).

    import mvi
    from mvi import flags as ff

    store = mvi.Flags(cloud, "flags")
    store.create_table()
    store.save(ff.percentage("new-checkout", 5))
    client = store.client()
    client.bool_value("new-checkout", False, mvi.EvalContext("user-42", country="NL"))

A flag is checked whole when it is saved (weights that do not sum to 100, an unknown default
variant, a rule on a value of the wrong type are refused with ``InvalidArgument``).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["flag", "boolean", "percentage", "rollout", "condition", "rule", "OPERATORS"]

#: The operators a condition can use.
OPERATORS = (
    "equals", "not_equals", "one_of", "not_one_of", "starts_with", "ends_with", "contains",
    "lt", "lte", "gt", "gte", "semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte",
)


def flag(
    key: str,
    type: str,
    variants: Dict[str, Any],
    default_variant: str,
    *,
    enabled: bool = True,
    rules: Sequence[Dict[str, Any]] = (),
    rollout: Optional[Dict[str, Any]] = None,
    description: str = "",
) -> Dict[str, Any]:
    """A flag of ``type`` ("boolean", "string", "number" or "object")."""
    out: Dict[str, Any] = {
        "key": key,
        "type": type,
        "variants": dict(variants),
        "default_variant": default_variant,
        "enabled": enabled,
    }
    if rules:
        out["rules"] = list(rules)
    if rollout is not None:
        out["rollout"] = rollout
    if description:
        out["description"] = description
    return out


def boolean(key: str, *, default: str = "off", **kw: Any) -> Dict[str, Any]:
    """A boolean flag with variants ``on`` (True) and ``off`` (False)."""
    return flag(key, "boolean", {"on": True, "off": False}, default, **kw)


def percentage(key: str, percent: int, *, by: Optional[str] = None, group: Optional[str] = None,
               **kw: Any) -> Dict[str, Any]:
    """A boolean flag ``on`` for ``percent`` % of targeting keys (or of the attribute ``by``)."""
    return boolean(key, rollout=rollout([("on", percent), ("off", 100 - percent)], by=by, group=group),
                   **kw)


def rollout(splits: Iterable[Tuple[str, int]], *, by: Optional[str] = None,
            group: Optional[str] = None) -> Dict[str, Any]:
    """A percentage rollout: (variant, percent) pairs summing to 100, sticky on the targeting
    key (or ``by``), bucketed as Unleash buckets (group: the flag's key unless given)."""
    out: Dict[str, Any] = {"splits": [{"variant": v, "weight": w} for v, w in splits]}
    if by is not None:
        out["by"] = by
    if group is not None:
        out["group"] = group
    return out


def condition(attribute: str, op: str, value: Any) -> Dict[str, Any]:
    """A condition on one context attribute (see ``OPERATORS``)."""
    return {"attribute": attribute, "op": op, "value": value}


def rule(when: List[Dict[str, Any]], *, variant: Optional[str] = None,
         rollout: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A targeting rule serving ``variant`` or ``rollout`` when every condition holds."""
    if (variant is None) == (rollout is None):
        raise ValueError("a rule serves a variant or a rollout (one of them)")
    return {"when": when, "variant": variant} if variant is not None else {"when": when, "rollout": rollout}
