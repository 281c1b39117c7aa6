"""Patch semantics: JSON merge patch, JSON patch, strategic merge patch and server-side apply.

Strategic merge patch and apply are approximations of the real API server's behaviour, good enough
for what helm (three-way strategic merge in Helm 3, server-side apply in Helm 4) and kubectl send:

* Lists of maps merge by a key chosen from the field name (containers and env by ``name``, ports by
  ``containerPort`` or ``port``, volumeMounts by ``mountPath``, conditions by ``type``, ...). Other
  lists are replaced whole, as for fields without a ``patchStrategy`` in the Kubernetes types.
* The directives ``$patch: replace|delete|merge``, ``$setElementOrder/<field>``, ``$retainKeys`` and
  ``$deleteFromPrimitiveList/<field>`` are honoured.
* Apply keeps, per field manager, the configuration it last applied. Fields that manager applied
  before but no longer sends are removed; fields it never sent (server defaults, status, other
  managers' fields) are kept. There are no managedFields and no conflicts.
"""

from __future__ import annotations

import copy
from typing import Any

# Field name -> merge key for lists of maps (patchStrategy=merge in the Kubernetes types).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "readinessGates": "conditionType",
}
# Lists of scalars with patchStrategy=merge.
PRIMITIVE_MERGE = {"finalizers"}


class PatchError(ValueError):
    """A patch that cannot be applied (422 / 400 in the API)."""


def merge_key(field: str, *lists: Any) -> str | None:
    if field == "ports":
        for items in lists:
            for item in items or []:
                if isinstance(item, dict):
                    if "containerPort" in item:
                        return "containerPort"
                    if "port" in item:
                        return "port"
        return None
    return MERGE_KEYS.get(field)


# ---------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch


def json_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


# ---------------------------------------------------------------------------------------------
# RFC 6902 JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError) as e:
                raise PatchError(f"path element {p!r} not found") from e
        elif isinstance(cur, dict):
            if p not in cur:
                raise PatchError(f"path element {p!r} not found")
            cur = cur[p]
        else:
            raise PatchError(f"cannot traverse into {p!r}")
    return cur


def json_patch(doc: Any, ops: list) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))

        def get_value(p: list[str]) -> Any:
            return copy.deepcopy(_container(doc, p))

        def remove(p: list[str]) -> Any:
            parent = _container(doc, p[:-1])
            last = p[-1]
            if isinstance(parent, list):
                try:
                    return parent.pop(int(last))
                except (ValueError, IndexError) as e:
                    raise PatchError(f"cannot remove {last!r}") from e
            if last not in parent:
                raise PatchError(f"cannot remove missing key {last!r}")
            return parent.pop(last)

        def add(p: list[str], value: Any) -> None:
            nonlocal doc
            if not p:
                doc = value
                return
            parent = _container(doc, p[:-1])
            last = p[-1]
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                else:
                    try:
                        idx = int(last)
                    except ValueError as e:
                        raise PatchError(f"bad list index {last!r}") from e
                    if idx > len(parent):
                        raise PatchError(f"list index {idx} out of range")
                    parent.insert(idx, value)
            elif isinstance(parent, dict):
                parent[last] = value
            else:
                raise PatchError("cannot add to a scalar")

        if kind == "add":
            add(parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            remove(parts)
        elif kind == "replace":
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                remove(parts)
                add(parts, copy.deepcopy(op.get("value")))
        elif kind == "move":
            value = remove(_pointer(op["from"]))
            add(parts, value)
        elif kind == "copy":
            add(parts, get_value(_pointer(op["from"])))
        elif kind == "test":
            if get_value(parts) != op.get("value"):
                raise PatchError(f"test operation failed at {op.get('path')}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


# ---------------------------------------------------------------------------------------------
# Strategic merge patch


def _strip(value: Any) -> Any:
    """A copy of a patch fragment without $-directives (for values that are inserted whole)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def strategic_merge_patch(orig: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    return _smp_map(orig if isinstance(orig, dict) else {}, patch)


def _smp_map(orig: dict, patch: dict) -> dict | None:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return None
    result = copy.deepcopy(orig)
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in (v or [])]
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = _smp_map(result[k] if isinstance(result.get(k), dict) else {}, v)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _smp_list(k, result.get(k), v)
        else:
            result[k] = v
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(v, list):
                result[field] = _reorder(field, result[field], v)
    return result


def _reorder(field: str, items: list, order: list) -> list:
    key = merge_key(field, items, order)
    if key is None:
        ordered = [x for x in order if x in items]
        return ordered + [x for x in items if x not in ordered]
    index = {}
    for i, item in enumerate(items):
        if isinstance(item, dict):
            index.setdefault(item.get(key), i)
    out, used = [], set()
    for o in order:
        k = o.get(key) if isinstance(o, dict) else None
        if k in index and index[k] not in used:
            used.add(index[k])
            out.append(items[index[k]])
    out += [item for i, item in enumerate(items) if i not in used]
    return out


def _smp_list(field: str, orig: Any, patch: list) -> list:
    orig = orig if isinstance(orig, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if field in PRIMITIVE_MERGE:
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    key = merge_key(field, orig, patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return _strip(patch)
    result = copy.deepcopy(orig)
    for item in patch:
        kv = item.get(key)
        idx = next((i for i, o in enumerate(result) if isinstance(o, dict) and o.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                result.pop(idx)
            continue
        if idx is None:
            result.append(_strip(item))
        else:
            merged = _smp_map(result[idx], item)
            if merged is None:
                result.pop(idx)
            else:
                result[idx] = merged
    return result


# ---------------------------------------------------------------------------------------------
# Server-side apply (approximation)

# Fields the API server owns; an applied configuration never sets or removes them.
_SYSTEM_META = {"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                "deletionGracePeriodSeconds", "managedFields", "selfLink"}


def apply_patch(current: dict | None, applied: dict, last_applied: dict | None) -> dict:
    """Merge an applied configuration into the live object.

    - current: the live object, or None when the apply creates it.
    - applied: the configuration sent now.
    - last_applied: what the same field manager applied last time (None the first time).
    """
    applied = copy.deepcopy(applied)
    meta = applied.get("metadata") or {}
    for k in list(meta):
        if k in _SYSTEM_META:
            meta.pop(k)
    applied.pop("status", None)
    if current is None:
        return _strip_nulls(applied)
    return _apply_map(current, applied, last_applied or {}, top=True)


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _apply_map(cur: dict, new: dict, last: dict, top: bool = False) -> dict:
    result = copy.deepcopy(cur)
    for k in last:
        if k not in new and not (top and k in ("status",)):
            if top and k == "metadata":
                continue
            result.pop(k, None)
    for k, v in new.items():
        lk = last.get(k) if isinstance(last, dict) else None
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict) and isinstance(result.get(k), dict):
            result[k] = _apply_map(result[k], v, lk if isinstance(lk, dict) else {})
        elif isinstance(v, list) and isinstance(result.get(k), list):
            result[k] = _apply_list(k, result[k], v, lk if isinstance(lk, list) else [])
        else:
            result[k] = _strip_nulls(v)
    return result


def _apply_list(field: str, cur: list, new: list, last: list) -> list:
    key = merge_key(field, cur, new)
    if field in PRIMITIVE_MERGE:
        removed = [x for x in last if x not in new]
        out = [x for x in cur if x not in removed]
        return out + [x for x in new if x not in out]
    if key is None or not all(isinstance(i, dict) for i in new) or not all(isinstance(i, dict) for i in cur):
        return _strip_nulls(new)
    new_keys = [i.get(key) for i in new]
    last_keys = {i.get(key) for i in last if isinstance(i, dict)}
    by_key_cur = {i.get(key): i for i in cur}
    by_key_last = {i.get(key): i for i in last if isinstance(i, dict)}
    out = []
    for item in new:
        kv = item.get(key)
        if kv in by_key_cur:
            out.append(_apply_map(by_key_cur[kv], item, by_key_last.get(kv, {})))
        else:
            out.append(_strip_nulls(item))
    for item in cur:
        kv = item.get(key)
        if kv in new_keys or kv in last_keys:
            continue
        out.append(copy.deepcopy(item))
    return out
