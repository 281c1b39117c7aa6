"""The API resources the emulator serves, and the discovery documents built from them."""

from __future__ import annotations

import zlib

from dataclasses import dataclass, field

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Whether metadata.generation tracks spec changes (workload kinds).
    generation: bool = False
    categories: tuple[str, ...] = ()
    singular: str = field(default="")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gv(self) -> str:
        return self.api_version

    @property
    def qualified(self) -> str:
        """plural.group, as error messages name a resource (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


_ALL = ("all",)

RESOURCES: list[Resource] = [
    # core/v1
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize")),
    Resource("", "v1", "nodes", "Node", False, ("no",), ("status", "proxy")),
    Resource("", "v1", "pods", "Pod", True, ("po",), ("status", "proxy", "log", "eviction", "binding"),
             categories=_ALL),
    Resource("", "v1", "services", "Service", True, ("svc",), ("status", "proxy"), categories=_ALL),
    Resource("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), ("token",)),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
    Resource("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), ("status",)),
    Resource("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    Resource("", "v1", "replicationcontrollers", "ReplicationController", True, ("rc",), ("status", "scale"),
             generation=True, categories=_ALL),
    # apps/v1
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), generation=True,
             categories=_ALL),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), generation=True,
             categories=_ALL),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), generation=True,
             categories=_ALL),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), generation=True,
             categories=_ALL),
    Resource("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    # batch/v1
    Resource("batch", "v1", "jobs", "Job", True, (), ("status",), generation=True, categories=_ALL),
    Resource("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), generation=True, categories=_ALL),
    # autoscaling
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",),
             ("status",), generation=True, categories=_ALL),
    Resource("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",),
             ("status",), generation=True),
    # networking
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), ("status",), generation=True),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), generation=True),
    # discovery
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    # policy
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",),
             generation=True),
    # rbac
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    # storage, scheduling, coordination, CRDs
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    Resource("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
             ("crd", "crds"), ("status",), generation=True),
]

# Resources served under several versions (e.g. HPA v1/v2) are one set of stored objects; the first
# version in the catalogue is the primary one, used when the whole store is walked.
PRIMARY: dict[tuple[str, str], Resource] = {}
for _r in RESOURCES:
    PRIMARY.setdefault((_r.group, _r.plural), _r)


def is_primary(r: Resource) -> bool:
    return PRIMARY[(r.group, r.plural)] is r


BY_GV_PLURAL: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND: dict[tuple[str, str], Resource] = {}
for _r in RESOURCES:
    BY_KIND.setdefault((_r.group, _r.kind), _r)


def group_versions() -> dict[str, list[str]]:
    """group -> versions, preferred first, in catalogue order."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return BY_GV_PLURAL.get((group, version, plural))


def by_api_version_kind(api_version: str, kind: str) -> Resource | None:
    group = api_version.split("/")[0] if "/" in api_version else ""
    version = api_version.split("/")[-1]
    for r in RESOURCES:
        if r.group == group and r.version == version and r.kind == kind:
            return r
    return BY_KIND.get((group, kind))


def api_versions_doc() -> dict:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    }


def api_group_list_doc() -> dict:
    groups = []
    for group, versions in group_versions().items():
        if not group:
            continue
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group_doc(group: str) -> dict | None:
    versions = group_versions().get(group)
    if not versions or not group:
        return None
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}


def resource_list_doc(group: str, version: str) -> dict | None:
    rs = [r for r in RESOURCES if r.group == group and r.version == version]
    if not rs:
        return None
    items = []
    for r in rs:
        entry = {
            "name": r.plural,
            "singularName": r.singular or r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(VERBS),
            "storageVersionHash": "emu" + r.kind.lower()[:8],
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        items.append(entry)
        for sub in r.subresources:
            if sub == "status":
                verbs = ["get", "patch", "update"]
                sub_kind = r.kind
            elif sub == "scale":
                verbs = ["get", "patch", "update"]
                sub_kind = "Scale"
            elif sub == "proxy":
                verbs = ["create", "delete", "get", "patch", "update"]
                sub_kind = "PodProxyOptions" if r.kind == "Pod" else f"{r.kind}ProxyOptions"
            else:
                verbs = ["get"] if sub == "log" else ["create"]
                sub_kind = {"log": "Pod", "eviction": "Eviction", "binding": "Binding", "token": "TokenRequest",
                            "finalize": "Namespace"}.get(sub, r.kind)
            items.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                          "kind": sub_kind, "verbs": verbs})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": items}


def openapi_v3_root() -> dict:
    paths = {}
    for group, versions in group_versions().items():
        for v in versions:
            key = f"apis/{group}/{v}" if group else "api/v1"
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=EMU{zlib.crc32(key.encode()):010d}"}
    return {"paths": paths}


def openapi_v3_gv(group: str, version: str) -> dict | None:
    """A minimal OpenAPI v3 document for one group/version.

    Each resource gets a PATCH operation tagged with its GVK and a ``fieldValidation`` query
    parameter. Seeing that parameter, client-go's QueryParamVerifierV3 concludes the server
    validates fields itself, so helm and kubectl skip client-side schema validation.
    """
    rs = [r for r in RESOURCES if r.group == group and r.version == version]
    if not rs:
        return None
    prefix = f"/apis/{group}/{version}" if group else "/api/v1"
    params = [
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
         "description": "fieldValidation instructs the server on how to handle objects in the request "
                        "containing unknown or duplicate fields."},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}},
    ]
    paths = {}
    schemas = {}
    for r in rs:
        path = f"{prefix}/namespaces/{{namespace}}/{r.plural}/{{name}}" if r.namespaced else f"{prefix}/{r.plural}/{{name}}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        schema_name = f"io.k8s.emu.{r.group or 'core'}.{r.version}.{r.kind}"
        paths[path] = {
            "get": {"operationId": f"read{r.kind}", "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK", "content": {"application/json": {
                        "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}}},
            "patch": {"operationId": f"patch{r.kind}", "x-kubernetes-action": "patch",
                      "x-kubernetes-group-version-kind": gvk, "parameters": params,
                      "responses": {"200": {"description": "OK"}}},
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        }
        schemas[schema_name] = {
            "type": "object",
            "x-kubernetes-group-version-kind": [gvk],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"type": "object"}, "spec": {"type": "object"},
                           "status": {"type": "object"}},
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubeemu)", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
