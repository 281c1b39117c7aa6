"""Label and field selectors, in the string form of the API and the LabelSelector object form."""

from __future__ import annotations

import re
from typing import Any


class SelectorError(ValueError):
    pass


# A requirement is (key, op, values): op in "=", "!=", "in", "notin", "exists", "!".
Requirement = tuple[str, str, tuple[str, ...]]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\)|(==|!=|=)\s*([A-Za-z0-9._-]*))?\s*$")


def _split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (x.strip() for x in parts) if p]


def parse_label_selector(s: str | None) -> list[Requirement]:
    if not s:
        return []
    reqs: list[Requirement] = []
    for part in _split_top(s):
        m = _SET_RE.match(part)
        if not m:
            raise SelectorError(f"unable to parse requirement: {part!r}")
        bang, key, setop, setvals, op, value = m.groups()
        if bang:
            if setop or op:
                raise SelectorError(f"invalid requirement {part!r}")
            reqs.append((key, "!", ()))
        elif setop:
            vals = tuple(v.strip() for v in setvals.split(",") if v.strip())
            reqs.append((key, setop, vals))
        elif op:
            reqs.append((key, "!=" if op == "!=" else "=", (value,)))
        else:
            reqs.append((key, "exists", ()))
    return reqs


def matches_labels(reqs: list[Requirement], labels: dict | None) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        present = key in labels
        v = labels.get(key)
        if op == "=" and (not present or v != vals[0]):
            return False
        if op == "!=" and present and v == vals[0]:
            return False
        if op == "in" and (not present or v not in vals):
            return False
        if op == "notin" and present and v in vals:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def label_selector_object_matches(selector: dict | None, labels: dict | None) -> bool:
    """Match a LabelSelector object (matchLabels + matchExpressions). An empty selector matches all."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_object_to_string(selector: dict | None) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector or {}).get("matchLabels", {}).items())]
    for expr in (selector or {}).get("matchExpressions") or []:
        op = expr.get("operator")
        if op == "In":
            parts.append(f"{expr['key']} in ({','.join(expr.get('values', []))})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({','.join(expr.get('values', []))})")
        elif op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append("!" + expr["key"])
    return ",".join(parts)


def parse_field_selector(s: str | None) -> list[tuple[str, str, str]]:
    if not s:
        return []
    out = []
    for part in _split_top(s):
        m = re.match(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid field selector: {part!r}")
        key, op, value = m.groups()
        out.append((key, "!=" if op == "!=" else "=", value))
    return out


def field_value(obj: dict, path: str) -> Any:
    cur: Any = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def matches_fields(reqs: list[tuple[str, str, str]], obj: dict) -> bool:
    for key, op, value in reqs:
        v = field_value(obj, key)
        if isinstance(v, bool):
            s = "true" if v else "false"
        elif v is None:
            s = ""
        else:
            s = str(v)
        if op == "=" and s != value:
            return False
        if op == "!=" and s == value:
            return False
    return True
