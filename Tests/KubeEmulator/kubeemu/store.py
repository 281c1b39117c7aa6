"""The object store: every API object, one global resourceVersion counter, and the watch history.

Stored objects are never mutated in place: every write stores a fresh dict, so readers (list
responses, watch streams) may serialise what they got after releasing the lock.
"""

from __future__ import annotations

import collections
import copy
import datetime as _dt
import ipaddress
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from . import patch as patchlib
from .resources import RESOURCES, Resource, is_primary, lookup
from .selectors import (
    label_selector_object_matches,
    matches_fields,
    matches_labels,
    parse_field_selector,
    parse_label_selector,
)

NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return _dt.datetime.strptime(s, fmt).replace(tzinfo=_dt.timezone.utc).timestamp()
        except ValueError:
            pass
    return None


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_CHARS) for _ in range(n))


class ApiError(Exception):
    """An error the API answers with a Kubernetes Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural})


def namespace_not_found(ns: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})


def conflict(res: Resource, name: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been modified; '
                    f"please apply your changes to the latest version and try again",
                    {"name": name, "group": res.group, "kind": res.plural})


def already_exists(res: Resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists',
                    {"name": name, "group": res.group, "kind": res.plural})


def invalid(res: Resource, name: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'{res.kind} "{name}" is invalid: {message}',
                    {"name": name, "group": res.group, "kind": res.kind})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: tuple[str, str]  # (group, plural)
    namespace: str
    obj: dict
    old: dict | None


Key = tuple[str, str]


class Store:
    HISTORY = 50000

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 0
        self.objects: dict[Key, dict[tuple[str, str], dict]] = {}
        self.history: collections.deque[WatchEvent] = collections.deque(maxlen=self.HISTORY)
        self.oldest_rv = 0  # events with rv > oldest_rv are all in history
        self.applied: dict[tuple[str, str], dict] = {}  # (uid, manager) -> last applied config
        self.changed = threading.Event()  # set on every write; the controller waits on it
        self._next_ip = int(ipaddress.ip_address("10.96.0.10"))
        self.hooks: list[Callable[[WatchEvent], None]] = []

    # -----------------------------------------------------------------------------------------
    # helpers

    @staticmethod
    def key(res: Resource) -> Key:
        return (res.group, res.plural)

    def _bucket(self, res: Resource) -> dict:
        return self.objects.setdefault(self.key(res), {})

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, etype: str, res: Resource, ns: str, obj: dict, old: dict | None) -> None:
        if len(self.history) == self.history.maxlen:
            self.oldest_rv = self.history[0].rv
        ev = WatchEvent(int(obj["metadata"]["resourceVersion"]), etype, self.key(res), ns, obj, old)
        self.history.append(ev)
        self.cond.notify_all()
        self.changed.set()
        for hook in self.hooks:
            hook(ev)

    def namespace_exists(self, ns: str) -> bool:
        return ("", ns) in self.objects.get(("", "namespaces"), {})

    def _with_type(self, res: Resource, obj: dict) -> dict:
        if obj.get("apiVersion") == res.api_version and obj.get("kind") == res.kind:
            return obj
        out = dict(obj)
        out["apiVersion"] = res.api_version
        out["kind"] = res.kind
        return out

    # -----------------------------------------------------------------------------------------
    # reads

    def get(self, res: Resource, ns: str, name: str) -> dict:
        with self.lock:
            obj = self._bucket(res).get((ns if res.namespaced else "", name))
            if obj is None:
                raise not_found(res, name)
            return self._with_type(res, obj)

    def try_get(self, res: Resource, ns: str, name: str) -> dict | None:
        with self.lock:
            obj = self._bucket(res).get((ns if res.namespaced else "", name))
            return None if obj is None else self._with_type(res, obj)

    def list(self, res: Resource, ns: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict], int]:
        lreqs = parse_label_selector(label_selector)
        freqs = parse_field_selector(field_selector)
        with self.lock:
            items = []
            for (ons, _), obj in sorted(self._bucket(res).items()):
                if ns and res.namespaced and ons != ns:
                    continue
                if not matches_labels(lreqs, obj["metadata"].get("labels")):
                    continue
                if not matches_fields(freqs, obj):
                    continue
                items.append(self._with_type(res, obj))
            return items, self.rv

    def list_raw(self, res: Resource, ns: str | None = None) -> list[dict]:
        with self.lock:
            return [o for (ons, _), o in sorted(self._bucket(res).items()) if not ns or ons == ns]

    def select(self, res: Resource, ns: str, selector: dict | None) -> list[dict]:
        """Objects in ns whose labels match a LabelSelector object."""
        with self.lock:
            return [o for (ons, _), o in sorted(self._bucket(res).items())
                    if ons == ns and label_selector_object_matches(selector, o["metadata"].get("labels"))]

    def dependents(self, uid: str) -> list[tuple[Resource, dict]]:
        out = []
        with self.lock:
            for r in RESOURCES:
                if (r.group, r.plural) not in self.objects:
                    continue
                if not is_primary(r):
                    continue
                for o in list(self._bucket(r).values()):
                    for ref in o["metadata"].get("ownerReferences") or []:
                        if ref.get("uid") == uid:
                            out.append((r, o))
                            break
        return out

    # -----------------------------------------------------------------------------------------
    # defaults and metadata

    def _alloc_cluster_ip(self) -> str:
        ip = str(ipaddress.ip_address(self._next_ip))
        self._next_ip += 1
        return ip

    def _defaults(self, res: Resource, obj: dict, old: dict | None) -> None:
        kind = res.kind
        spec = obj.get("spec")
        if kind == "Deployment":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            self._pod_template_defaults(spec.get("template"))
        elif kind == "ReplicaSet":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            self._pod_template_defaults(spec.get("template"))
        elif kind == "Pod":
            self._pod_spec_defaults(obj.setdefault("spec", {}))
            if old is None:
                st = obj.setdefault("status", {})
                st.setdefault("phase", "Pending")
                st.setdefault("qosClass", "BestEffort")
        elif kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec["type"] != "ExternalName":
                old_ip = (old or {}).get("spec", {}).get("clusterIP")
                if not spec.get("clusterIP"):
                    spec["clusterIP"] = old_ip or self._alloc_cluster_ip()
                spec["clusterIPs"] = [spec["clusterIP"]]
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
                spec.setdefault("internalTrafficPolicy", "Cluster")
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                if "targetPort" not in p and "port" in p:
                    p["targetPort"] = p["port"]
            obj.setdefault("status", {}).setdefault("loadBalancer", {})
        elif kind == "Secret":
            obj.setdefault("type", "Opaque")
            sd = obj.pop("stringData", None)
            if sd:
                import base64

                data = obj.setdefault("data", {}) or {}
                obj["data"] = data
                for k, v in sd.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
        elif kind == "Namespace":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {})["phase"] = "Active"
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif kind == "Job":
            spec = obj.setdefault("spec", {})
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
        elif kind == "PersistentVolumeClaim":
            obj.setdefault("status", {}).setdefault("phase", "Bound")
        del spec

    @staticmethod
    def _pod_spec_defaults(spec: dict) -> None:
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("securityContext", {})
        for c in spec.get("containers") or []:
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("imagePullPolicy", "IfNotPresent")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                p.setdefault("protocol", "TCP")

    def _pod_template_defaults(self, template: dict | None) -> None:
        if isinstance(template, dict):
            self._pod_spec_defaults(template.setdefault("spec", {}))
            template.setdefault("metadata", {})

    def _finish(self, res: Resource, obj: dict, old: dict | None, subresource: str | None) -> dict:
        """Carry server-owned metadata over from old, apply defaults, bump generation and rv."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        meta = obj.setdefault("metadata", {})
        if old is not None:
            ometa = old["metadata"]
            for k in ("uid", "creationTimestamp", "generation", "namespace", "name", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
                if k in ometa:
                    meta[k] = ometa[k]
                else:
                    meta.pop(k, None)
            if subresource == "status":
                # Only status changes through /status.
                new = copy.deepcopy(old)
                new["status"] = obj.get("status", {})
                obj, meta = new, new["metadata"]
            elif "status" in res.subresources or res.kind in ("Pod", "Namespace", "Service"):
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        for k in ("labels", "annotations"):
            if k in meta and meta[k] is None:
                del meta[k]
        self._defaults(res, obj, old)
        if res.generation:
            if old is None:
                meta["generation"] = 1
            elif _spec_of(obj) != _spec_of(old):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
        meta["resourceVersion"] = str(self._bump())
        return obj

    # -----------------------------------------------------------------------------------------
    # writes

    def create(self, res: Resource, ns: str, obj: dict, dry_run: bool = False, internal: bool = False) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was not an object")
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {}) or {}
            obj["metadata"] = meta
            if res.namespaced:
                body_ns = meta.get("namespace")
                if body_ns and ns and body_ns != ns:
                    raise bad_request("the namespace of the provided object does not match the namespace "
                                      "sent on the request")
                ns = ns or body_ns or "default"
                meta["namespace"] = ns
                if not self.namespace_exists(ns):
                    raise namespace_not_found(ns)
            else:
                meta.pop("namespace", None)
                ns = ""
            if not meta.get("name"):
                if meta.get("generateName"):
                    for _ in range(20):
                        candidate = meta["generateName"] + random_suffix()
                        if (ns, candidate) not in self._bucket(res):
                            meta["name"] = candidate
                            break
                else:
                    raise invalid(res, "", "metadata.name: Required value: name or generateName is required")
            name = meta["name"]
            if (ns, name) in self._bucket(res):
                raise already_exists(res, name)
            if not internal and "status" in res.subresources and res.kind not in ("Namespace",):
                obj.pop("status", None)
            if "status" in res.subresources:
                obj.setdefault("status", {})  # typed objects always serialise a status
            meta.pop("resourceVersion", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            obj = self._finish(res, obj, None, None)
            if dry_run:
                return obj
            self._bucket(res)[(ns, name)] = obj
            self._record("ADDED", res, ns, obj, None)
            if res.kind == "Namespace":
                self._namespace_created(name)
            return self._with_type(res, obj)

    def _namespace_created(self, name: str) -> None:
        sa = lookup("", "v1", "serviceaccounts")
        if sa and not self.try_get(sa, name, "default"):
            self.create(sa, name, {"metadata": {"name": "default"}}, internal=True)

    def update(self, res: Resource, ns: str, name: str, obj: dict, subresource: str | None = None,
               dry_run: bool = False, check_rv: bool = True) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was not an object")
        with self.lock:
            ns = ns if res.namespaced else ""
            old = self._bucket(res).get((ns, name))
            if old is None:
                raise not_found(res, name)
            meta = obj.get("metadata") or {}
            if meta.get("name") and meta["name"] != name:
                raise bad_request("the name of the object does not match the name on the URL")
            rv = meta.get("resourceVersion")
            if check_rv and rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            new = self._finish(res, obj, old, subresource)
            if _without_rv(new) == _without_rv(old):
                # No-op updates do not change the resourceVersion, as on a real server.
                self.rv -= 1
                return self._with_type(res, old)
            if dry_run:
                return new
            self._bucket(res)[(ns, name)] = new
            self._record("MODIFIED", res, ns, new, old)
            return self._with_type(res, new)

    def patch(self, res: Resource, ns: str, name: str, content_type: str, body: Any,
              field_manager: str = "", subresource: str | None = None, dry_run: bool = False,
              force: bool = False) -> tuple[dict, bool]:
        """Apply a patch. Returns (object, created)."""
        ct = content_type.split(";")[0].strip().lower()
        with self.lock:
            ns = ns if res.namespaced else ""
            old = self._bucket(res).get((ns, name))
            if ct == "application/apply-patch+yaml" or ct == "application/apply-patch+json":
                if not isinstance(body, dict):
                    raise bad_request("apply patch body must be an object")
                bmeta = body.get("metadata") or {}
                if bmeta.get("name") and bmeta["name"] != name:
                    raise bad_request("the name of the object does not match the name on the URL")
                manager = field_manager or "unknown"
                if old is None:
                    if subresource:
                        raise not_found(res, name)
                    created = patchlib.apply_patch(None, body, None)
                    created.setdefault("metadata", {})["name"] = name
                    obj = self.create(res, ns, created, dry_run=dry_run)
                    if not dry_run:
                        self.applied[(obj["metadata"]["uid"], manager)] = copy.deepcopy(body)
                    return obj, True
                last = self.applied.get((old["metadata"]["uid"], manager))
                merged = patchlib.apply_patch(old, body, last)
                merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                out = self.update(res, ns, name, merged, subresource=subresource, dry_run=dry_run)
                if not dry_run:
                    self.applied[(old["metadata"]["uid"], manager)] = copy.deepcopy(body)
                return out, False
            if old is None:
                raise not_found(res, name)
            try:
                if ct == "application/merge-patch+json":
                    merged = patchlib.json_merge_patch(old, body)
                elif ct == "application/json-patch+json":
                    merged = patchlib.json_patch(old, body)
                elif ct == "application/strategic-merge-patch+json":
                    merged = patchlib.strategic_merge_patch(old, body)
                else:
                    raise ApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types "
                                   "include: application/json-patch+json, application/merge-patch+json, "
                                   "application/apply-patch+yaml, application/strategic-merge-patch+json")
            except patchlib.PatchError as e:
                raise ApiError(422, "Invalid", str(e))
            if not isinstance(merged, dict):
                raise bad_request("patch result is not an object")
            mmeta = merged.setdefault("metadata", {})
            # A resourceVersion in a patch is a precondition.
            patched_rv = mmeta.get("resourceVersion")
            if patched_rv and patched_rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            mmeta["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self.update(res, ns, name, merged, subresource=subresource, dry_run=dry_run), False

    def delete(self, res: Resource, ns: str, name: str, propagation: str | None = None,
               dry_run: bool = False, preconditions: dict | None = None,
               grace_period: int | None = None) -> dict:
        """Delete an object, or, for a pod on a node, start its graceful deletion (see
        ``_graceful_pod_delete``); returns the deleted or terminating object."""
        with self.lock:
            ns = ns if res.namespaced else ""
            old = self._bucket(res).get((ns, name))
            if old is None:
                raise not_found(res, name)
            if preconditions:
                if preconditions.get("uid") and preconditions["uid"] != old["metadata"].get("uid"):
                    raise conflict(res, name)
                if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != old["metadata"][
                        "resourceVersion"]:
                    raise conflict(res, name)
            if res.kind == "Pod":
                terminating = self._graceful_pod_delete(res, ns, name, old, grace_period, dry_run)
                if terminating is not None:
                    return terminating
            if dry_run:
                return self._with_type(res, old)
            if res.kind == "Namespace":
                for r in RESOURCES:
                    if not r.namespaced or not is_primary(r):
                        continue
                    for (ons, oname) in list(self._bucket(r).keys()):
                        if ons == name:
                            self._delete_one(r, ons, oname)
            gone = self._delete_one(res, ns, name)
            uid = old["metadata"].get("uid")
            if propagation == "Orphan":
                for dres, dep in self.dependents(uid):
                    d = copy.deepcopy(dep)
                    d["metadata"]["ownerReferences"] = [r for r in d["metadata"].get("ownerReferences", [])
                                                        if r.get("uid") != uid]
                    if not d["metadata"]["ownerReferences"]:
                        del d["metadata"]["ownerReferences"]
                    self.update(dres, d["metadata"].get("namespace", ""), d["metadata"]["name"], d,
                                check_rv=False)
            else:
                self._cascade(uid)
            return gone

    @staticmethod
    def pod_grace_period(pod: dict, requested: int | None) -> int:
        """The API server's pod strategy (CheckGracefulDelete): the DeleteOptions' gracePeriodSeconds,
        else the pod's terminationGracePeriodSeconds; 0 (at once) for a pod on no node or one that
        has finished; a negative period becomes 1."""
        if requested is not None:
            period = int(requested)
        else:
            period = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 0)
        if not (pod.get("spec") or {}).get("nodeName"):
            period = 0
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            period = 0
        return 1 if period < 0 else period

    def _graceful_pod_delete(self, res: Resource, ns: str, name: str, old: dict, requested: int | None,
                             dry_run: bool) -> dict | None:
        """A pod deleted with a grace period is not removed: it gets ``deletionTimestamp`` (the time
        the grace period ends, as the API server sets it) and ``deletionGracePeriodSeconds`` and
        stays until its kubelet (the controller) has stopped it and deletes it with period 0.
        Deleting a terminating pod again may only shorten the period. None: delete it now."""
        meta = old["metadata"]
        current = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp"):
            if not current:
                return None
            if requested is None or int(requested) >= current:
                return self._with_type(res, old)  # graceful deletion already pending
            period = max(0, int(requested))
            ends = (parse_time(meta["deletionTimestamp"]) or time.time()) - current + period
        else:
            period = self.pod_grace_period(old, requested)
            ends = time.time() + period
        if period == 0:
            return None
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_rfc3339(ends)
        new["metadata"]["deletionGracePeriodSeconds"] = period
        if dry_run:
            return self._with_type(res, new)
        new["metadata"]["resourceVersion"] = str(self._bump())
        self._bucket(res)[(ns, name)] = new
        self._record("MODIFIED", res, ns, new, old)
        return self._with_type(res, new)

    def _cascade(self, uid: str) -> None:
        """Background garbage collection of dependents; pods are deleted gracefully, as the garbage
        collector's DELETE (with no grace period) does."""
        for dres, dep in self.dependents(uid):
            dns, dname = dep["metadata"].get("namespace", ""), dep["metadata"]["name"]
            if (dns, dname) not in self._bucket(dres):
                continue
            if dres.kind == "Pod" and self._graceful_pod_delete(dres, dns, dname, dep, None, False) is not None:
                continue
            self._delete_one(dres, dns, dname)
            self._cascade(dep["metadata"].get("uid"))

    def _delete_one(self, res: Resource, ns: str, name: str) -> dict:
        old = self._bucket(res).pop((ns, name))
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        gone["metadata"].setdefault("deletionTimestamp", now_rfc3339())
        self._record("DELETED", res, ns, gone, old)
        uid = old["metadata"].get("uid")
        for k in [k for k in self.applied if k[0] == uid]:
            del self.applied[k]
        return self._with_type(res, gone)

    def delete_collection(self, res: Resource, ns: str | None, label_selector: str | None,
                          field_selector: str | None, propagation: str | None = None,
                          grace_period: int | None = None) -> list[dict]:
        with self.lock:
            items, _ = self.list(res, ns, label_selector, field_selector)
            out = []
            for o in items:
                out.append(self.delete(res, o["metadata"].get("namespace", ""), o["metadata"]["name"],
                                       propagation, grace_period=grace_period))
            return out

    # -----------------------------------------------------------------------------------------
    # watch support

    def events_after(self, rv: int) -> list[WatchEvent] | None:
        """Events with resourceVersion > rv, or None if some of them are no longer kept (410)."""
        with self.lock:
            if rv < self.oldest_rv:
                return None
            if not self.history or self.history[-1].rv <= rv:
                return []
            # history is sorted by rv
            out = []
            for ev in reversed(self.history):
                if ev.rv <= rv:
                    break
                out.append(ev)
            out.reverse()
            return out

    def snapshot(self) -> dict:
        with self.lock:
            out: dict[str, Any] = {"resourceVersion": str(self.rv), "objects": {}}
            for r in RESOURCES:
                if not is_primary(r) or (r.group, r.plural) not in self.objects:
                    continue
                items = [self._with_type(r, o) for _, o in sorted(self._bucket(r).items())]
                if items:
                    out["objects"][r.qualified] = items
            return out


def _spec_of(obj: dict) -> Any:
    return json.dumps({k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")},
                      sort_keys=True)


def _without_rv(obj: dict) -> str:
    o = dict(obj)
    m = dict(o.get("metadata", {}))
    m.pop("resourceVersion", None)
    o["metadata"] = m
    return json.dumps(o, sort_keys=True)

