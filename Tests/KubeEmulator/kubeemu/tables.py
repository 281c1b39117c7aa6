"""Server-side printing (meta.k8s.io/v1 Table) for ``kubectl get``.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io``. Without a Table it falls back to
NAME/AGE only, so the kinds people look at get their usual columns here.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .resources import Resource
from .store import parse_time


def wants_table(accept: str) -> bool:
    return "as=Table" in (accept or "")


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def age(obj: dict, field: str | None = None) -> str:
    t = parse_time(obj.get(field) if field else obj["metadata"].get("creationTimestamp"))
    return "<unknown>" if t is None else human_duration(time.time() - t)


def _col(name: str, typ: str = "string", fmt: str = "", priority: int = 0, desc: str = "") -> dict:
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": priority}


def _pod_row(p: dict) -> list:
    st = p.get("status") or {}
    cs = st.get("containerStatuses") or []
    total = len((p.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    reason = st.get("reason") or st.get("phase") or "Pending"
    for c in cs:
        w = (c.get("state") or {}).get("waiting")
        t = (c.get("state") or {}).get("terminated")
        if w and w.get("reason"):
            reason = w["reason"]
        elif t:
            reason = t.get("reason") or f"ExitCode:{t.get('exitCode', 0)}"
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(int(c.get("restartCount") or 0) for c in cs)
    nominated = st.get("nominatedNodeName") or "<none>"
    return [p["metadata"]["name"], f"{ready}/{total}", reason, str(restarts), age(p), st.get("podIP") or "<none>",
            (p.get("spec") or {}).get("nodeName") or "<none>", nominated, "<none>"]


def _node_row(n: dict) -> list:
    conds = {c["type"]: c["status"] for c in (n.get("status") or {}).get("conditions") or []}
    status = "Ready" if conds.get("Ready") == "True" else "NotReady"
    if (n.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (n["metadata"].get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/"))
    info = (n.get("status") or {}).get("nodeInfo") or {}
    addrs = {a["type"]: a["address"] for a in (n.get("status") or {}).get("addresses") or []}
    return [n["metadata"]["name"], status, ",".join(roles) or "<none>", age(n), info.get("kubeletVersion", ""),
            addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"), info.get("osImage", ""),
            info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


def _deploy_row(d: dict) -> list:
    st = d.get("status") or {}
    spec = d.get("spec") or {}
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(d),
            ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs), sel]


def _rs_row(r: dict) -> list:
    st = r.get("status") or {}
    spec = r.get("spec") or {}
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return [r["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(r), ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs), sel]


def _svc_row(s: dict) -> list:
    spec = s.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
    sel = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>"
    return [s["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), "<none>", ports,
            age(s), sel]


def _event_row(e: dict) -> list:
    io = e.get("involvedObject") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    t = parse_time(last)
    seen = "<unknown>" if t is None else human_duration(time.time() - t)
    return [seen, e.get("type", ""), e.get("reason", ""), f"{(io.get('kind') or '').lower()}/{io.get('name', '')}",
            e.get("message", "")]


def _ns_row(n: dict) -> list:
    return [n["metadata"]["name"], (n.get("status") or {}).get("phase", "Active"), age(n)]


def _secret_row(s: dict) -> list:
    return [s["metadata"]["name"], s.get("type", "Opaque"), len(s.get("data") or {}), age(s)]


def _cm_row(c: dict) -> list:
    return [c["metadata"]["name"], len(c.get("data") or {}) + len(c.get("binaryData") or {}), age(c)]


def _ep_row(e: dict) -> list:
    eps = []
    for ss in e.get("subsets") or []:
        for a in ss.get("addresses") or []:
            for p in ss.get("ports") or []:
                eps.append(f"{a.get('ip')}:{p.get('port')}")
    return [e["metadata"]["name"], ",".join(eps) or "<none>", age(e)]


def _generic_row(o: dict) -> list:
    return [o["metadata"]["name"], age(o)]


_NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
_AGE = _col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")

PRINTERS: dict[str, tuple[list[dict], Callable[[dict], list]]] = {
    "Pod": ([_NAME, _col("Ready"), _col("Status"), _col("Restarts"), _AGE, _col("IP", priority=1),
             _col("Node", priority=1), _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)],
            _pod_row),
    "Node": ([_NAME, _col("Status"), _col("Roles"), _AGE, _col("Version"), _col("Internal-IP", priority=1),
              _col("External-IP", priority=1), _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
              _col("Container-Runtime", priority=1)], _node_row),
    "Deployment": ([_NAME, _col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), _AGE,
                    _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)],
                   _deploy_row),
    "ReplicaSet": ([_NAME, _col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"), _AGE,
                    _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)],
                   _rs_row),
    "Service": ([_NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _AGE,
                 _col("Selector", priority=1)], _svc_row),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")], _event_row),
    "Namespace": ([_NAME, _col("Status"), _AGE], _ns_row),
    "Secret": ([_NAME, _col("Type"), _col("Data", "integer"), _AGE], _secret_row),
    "ConfigMap": ([_NAME, _col("Data", "integer"), _AGE], _cm_row),
    "Endpoints": ([_NAME, _col("Endpoints"), _AGE], _ep_row),
}


def table(res: Resource, items: list[dict], list_meta: dict, include_object: str | None) -> dict:
    columns, row_fn = PRINTERS.get(res.kind, ([_NAME, _AGE], _generic_row))
    include = include_object or "Metadata"
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": row_fn(obj)}
        if include == "Object":
            row["object"] = obj
        elif include == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns,
            "rows": rows}
