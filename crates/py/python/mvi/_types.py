"""The shapes of mvi's requests and results, as dataclasses.

Each class mirrors one Rust type of ``mvi-core`` field for field (the Rust names, the
Rust enum variants as strings such as ``"Http"`` or ``"Ingress"``). The native module turns
Rust values into these classes with :func:`_build` and these classes into Rust values with
:func:`_to_json`; neither checks anything itself: the Rust side does, and its errors name
what was wrong. A field left ``None`` in a request takes the Rust constructor's default.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from ._mvi import Output

__all__ = [
    "BucketInfo", "ObjectMeta", "ObjectBody", "ListPage", "CompletedPart",
    "KeyAttr", "TableSpec", "TableInfo", "ItemPage",
    "KeyMetadata", "Decrypted", "DataKey", "AuditEvent",
    "LogGroup", "LogStream", "LogEvent", "LogRecord", "RecordPage",
    "MetricId", "Datum", "Datapoint", "AlarmSpec", "Alarm", "AlarmTransition",
    "Repository", "ImageConfig", "Descriptor", "Manifest", "ImageInfo",
    "HealthCheck", "SecretRef", "Grant", "ContainerSpec", "ServiceSpec", "ContainerInstance",
    "ServiceInfo", "TaskResult", "ScheduleSpec", "ScalingDecision", "ScalerInfo", "Count", "Rolling", "TrafficStep", "Analysis",
    "BlueGreen", "Canary", "Deployment", "ListenerForward", "Rollout", "RevisionSet",
    "ServiceEvent", "Revision",
    "TargetGroupSpec", "ListenerSpec", "LoadBalancerSpec", "LoadBalancerInfo", "TargetStatus",
    "DatabaseSpec", "DatabaseEvent", "DatabaseInfo", "Credentials", "SnapshotInfo",
    "VmSpec", "VmInfo",
    "VpcInfo", "SubnetInfo", "Rule", "SecurityGroupInfo",
    "PropDiff", "Step", "Drift", "Plan", "Report", "Event",
]

_kw: Dict[str, Any] = {"frozen": True}


# ---------------------------------------------------------------- Blob
@dataclass(**_kw)
class BucketInfo:
    name: str
    created: _dt.datetime


@dataclass(**_kw)
class ObjectMeta:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: _dt.datetime
    content_type: Optional[str] = None
    metadata: Dict[str, str] = field(default_factory=dict)


@dataclass(**_kw)
class ObjectBody:
    """An object read with ``blob.get_object``: its metadata, the byte range read, the bytes."""

    meta: ObjectMeta
    range: Tuple[int, int]
    body: bytes

    def __repr__(self) -> str:
        return f"ObjectBody(meta={self.meta!r}, range={self.range!r}, body=<{len(self.body)} bytes>)"


@dataclass(**_kw)
class ListPage:
    objects: List[ObjectMeta]
    common_prefixes: List[str]
    next: Optional[str] = None


@dataclass(**_kw)
class CompletedPart:
    number: int
    etag: str


# ---------------------------------------------------------------- KV
@dataclass(**_kw)
class KeyAttr:
    """A key attribute of a table: its name and kind (``"Str"``, ``"Number"`` or ``"Bytes"``)."""

    name: str
    kind: str = "Str"


@dataclass(**_kw)
class TableSpec:
    name: str
    partition_key: KeyAttr
    sort_key: Optional[KeyAttr] = None


@dataclass(**_kw)
class TableInfo:
    spec: TableSpec
    item_count: int
    created: _dt.datetime


@dataclass(**_kw)
class ItemPage:
    items: List[Dict[str, Any]]
    next: Optional[str] = None


# ---------------------------------------------------------------- Crypto
@dataclass(**_kw)
class KeyMetadata:
    id: str
    aliases: List[str]
    description: str
    state: str
    origin: str
    created: _dt.datetime
    versions: int
    deletion_date: Optional[_dt.datetime] = None


@dataclass(**_kw)
class Decrypted:
    key_id: str
    plaintext: bytes = field(repr=False)


@dataclass(**_kw)
class DataKey:
    key_id: str
    plaintext: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


@dataclass(**_kw)
class AuditEvent:
    time: _dt.datetime
    principal: str
    key_id: str
    operation: str
    outcome: str
    """``"Ok"`` or ``"Denied"`` (then ``reason`` says why)."""
    reason: Optional[str] = None

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        outcome = data.get("outcome")
        if isinstance(outcome, dict):
            (kind, reason), = outcome.items()
            data = {**data, "outcome": kind, "reason": reason}
        return data


# ---------------------------------------------------------------- Log
@dataclass(**_kw)
class LogGroup:
    name: str
    retention_days: Optional[int]
    created: _dt.datetime


@dataclass(**_kw)
class LogStream:
    name: str
    created: _dt.datetime
    last_event: Optional[_dt.datetime] = None


@dataclass(**_kw)
class LogEvent:
    timestamp: _dt.datetime
    message: str


@dataclass(**_kw)
class LogRecord:
    stream: str
    timestamp: _dt.datetime
    ingested: _dt.datetime
    message: str


@dataclass(**_kw)
class RecordPage:
    items: List[LogRecord]
    next: Optional[str] = None


# ---------------------------------------------------------------- Metric
def _stat_to_rust(s: str) -> Any:
    if isinstance(s, str) and s[:1] in ("p", "P") and s[1:].replace(".", "", 1).isdigit():
        return {"Percentile": round(float(s[1:]) * 100)}
    return s


def _stat_from_rust(s: Any) -> str:
    if isinstance(s, dict) and "Percentile" in s:
        p = s["Percentile"]
        return f"p{p // 100}" if p % 100 == 0 else f"p{p / 100}"
    return str(s)


@dataclass(**_kw)
class MetricId:
    namespace: str
    name: str
    dimensions: Dict[str, str] = field(default_factory=dict)


@dataclass(**_kw)
class Datum:
    """One sample. ``unit`` is a Rust ``Unit`` variant (``"Count"``, ``"Milliseconds"``, ...)."""

    name: str
    value: float
    timestamp: _dt.datetime
    dimensions: Dict[str, str] = field(default_factory=dict)
    unit: Optional[str] = None


@dataclass(**_kw)
class Datapoint:
    """One period's statistics, by name (``"Sum"``, ``"Average"``, ``"p99"``, ...)."""

    timestamp: _dt.datetime
    values: Dict[str, float]
    unit: str


@dataclass(**_kw)
class AlarmSpec:
    """An alarm. ``statistic``: ``"Sum"``, ``"Average"``, ``"Minimum"``, ``"Maximum"``,
    ``"SampleCount"`` or a percentile ``"p99"``; ``comparison``: ``"GreaterThanOrEqual"``,
    ``"GreaterThan"``, ``"LessThan"``, ``"LessThanOrEqual"``."""

    name: str
    metric: MetricId
    statistic: str
    period: _dt.timedelta
    evaluation_periods: int
    threshold: float
    comparison: str

    def _to_rust(self) -> Dict[str, Any]:
        return {**_fields(self), "statistic": _stat_to_rust(self.statistic)}

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        return {**data, "statistic": _stat_from_rust(data.get("statistic"))}


@dataclass(**_kw)
class Alarm:
    spec: AlarmSpec
    state: str
    reason: str
    updated: _dt.datetime


@dataclass(**_kw)
class AlarmTransition:
    time: _dt.datetime
    from_: str
    to: str
    reason: str

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        data = dict(data)
        data["from_"] = data.pop("from", None)
        return data


# ---------------------------------------------------------------- Image
@dataclass(**_kw)
class Repository:
    name: str
    uri: str
    created: _dt.datetime


@dataclass(**_kw)
class ImageConfig:
    entrypoint: List[str] = field(default_factory=list)
    cmd: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    exposed_port: Optional[int] = None
    working_dir: Optional[str] = None


@dataclass(**_kw)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def _to_rust(self) -> Dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        data = dict(data)
        data["media_type"] = data.pop("mediaType", None)
        return data


@dataclass(**_kw)
class Manifest:
    config: Descriptor
    layers: List[Descriptor]


@dataclass(**_kw)
class ImageInfo:
    repository: str
    digest: str
    tags: List[str]
    size: int
    pushed: _dt.datetime


# ---------------------------------------------------------------- Container
@dataclass(**_kw)
class HealthCheck:
    path: Optional[str] = None
    interval: Optional[_dt.timedelta] = None
    timeout: Optional[_dt.timedelta] = None
    healthy_threshold: Optional[int] = None
    unhealthy_threshold: Optional[int] = None


@dataclass(**_kw)
class SecretRef:
    env: str
    ciphertext: bytes = field(repr=False)


_GRANT_KINDS = {"bucket": "Bucket", "table": "Table", "key": "Key", "log_group": "LogGroup",
                "metric_namespace": "MetricNamespace"}
_GRANT_ACCESS = {"read": "Read", "write": "Write", "read_write": "ReadWrite"}


@dataclass(**_kw)
class Grant:
    """What a container's program may do with one resource through the services' AWS APIs
    (docs/access.md): ``Grant.bucket_read_write("uploads")``, ``Grant.table_read("visits")``.
    ``kind``: bucket, table, key, log_group or metric_namespace; ``access``: read, write or
    read_write."""
    kind: str
    name: str
    access: str = "read_write"

    def _to_rust(self) -> Dict[str, Any]:
        if self.kind not in _GRANT_KINDS:
            raise ValueError(f"grant kind {self.kind!r}: one of {', '.join(_GRANT_KINDS)}")
        if self.access not in _GRANT_ACCESS:
            raise ValueError(f"grant access {self.access!r}: one of {', '.join(_GRANT_ACCESS)}")
        return {"resource": {_GRANT_KINDS[self.kind]: self.name}, "access": _GRANT_ACCESS[self.access]}

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        ((kind, name),) = data["resource"].items()
        kinds = {v: k for k, v in _GRANT_KINDS.items()}
        access = {v: k for k, v in _GRANT_ACCESS.items()}
        return {"kind": kinds[kind], "name": name, "access": access[data["access"]]}

    @staticmethod
    def bucket_read(bucket: str) -> "Grant":
        return Grant("bucket", bucket, "read")

    @staticmethod
    def bucket_read_write(bucket: str) -> "Grant":
        return Grant("bucket", bucket, "read_write")

    @staticmethod
    def table_read(table: str) -> "Grant":
        return Grant("table", table, "read")

    @staticmethod
    def table_read_write(table: str) -> "Grant":
        return Grant("table", table, "read_write")

    @staticmethod
    def key_decrypt(key_id: str) -> "Grant":
        return Grant("key", key_id, "read")

    @staticmethod
    def key_encrypt(key_id: str) -> "Grant":
        return Grant("key", key_id, "write")

    @staticmethod
    def log_group_write(group: str) -> "Grant":
        return Grant("log_group", group, "write")

    @staticmethod
    def metric_namespace_write(namespace: str) -> "Grant":
        return Grant("metric_namespace", namespace, "write")


@dataclass(**_kw)
class ContainerSpec:
    image: str
    command: Optional[List[str]] = None
    env: Optional[Dict[str, str]] = None
    secrets: Optional[List[SecretRef]] = None
    port: Optional[int] = None
    cpu_millis: Optional[int] = None
    memory_mib: Optional[int] = None
    health_check: Optional[HealthCheck] = None
    stop_timeout: Optional[_dt.timedelta] = None
    grants: Optional[List[Grant]] = None
    """What the program may do through the services' AWS APIs; on the local backend its
    replicas get the endpoints' environment and a key limited to these."""


Count = Union[int, str]
"""A number of replicas (``2``) or a percent of the desired count (``"25%"``)."""


def _count_to_rust(c: Count) -> Dict[str, int]:
    if isinstance(c, str):
        if not c.endswith("%"):
            raise ValueError(f"count {c!r}: give a number of replicas or a percent such as '25%'")
        return {"Percent": int(c[:-1])}
    return {"Replicas": int(c)}


def _count_from_rust(c: Dict[str, int]) -> Count:
    if "Percent" in c:
        return f"{c['Percent']}%"
    return int(c.get("Replicas", 0))


@dataclass(**_kw)
class Rolling:
    """Replace replicas in turn: at most ``max_surge`` above the desired count, at most
    ``max_unavailable`` below it (ECS's defaults: 100 % and 0 %)."""

    max_surge: Count = "100%"
    max_unavailable: Count = "0%"

    def _to_rust(self) -> Dict[str, Any]:
        return {"Rolling": {"max_surge": _count_to_rust(self.max_surge),
                            "max_unavailable": _count_to_rust(self.max_unavailable)}}


@dataclass(**_kw)
class TrafficStep:
    """One traffic step: ``weight`` percent to the new revision, held for ``bake``."""

    weight: int
    bake: _dt.timedelta = _dt.timedelta(0)


@dataclass(**_kw)
class Analysis:
    """How the new revision's traffic is judged at every step."""

    interval: _dt.timedelta = _dt.timedelta(seconds=60)
    min_success_rate: float = 0.99
    max_p99: _dt.timedelta = _dt.timedelta(milliseconds=500)
    min_requests: int = 20
    failure_limit: int = 0

    def _to_rust(self) -> Dict[str, Any]:
        return {**_fields(self), "conditions": []}


@dataclass(**_kw)
class BlueGreen:
    """Run the new revision in ``preview_target_group``, check it, then move all traffic."""

    preview_target_group: str
    preview_path: Optional[str] = None
    analysis: Optional[Analysis] = None
    auto_promote: bool = True
    scale_down_delay: _dt.timedelta = _dt.timedelta(seconds=30)

    def _to_rust(self) -> Dict[str, Any]:
        return {"BlueGreen": _fields(self)}


@dataclass(**_kw)
class Canary:
    """Move traffic to the new revision in ``canary_target_group`` in weighted steps."""

    canary_target_group: str
    steps: List[TrafficStep] = field(default_factory=list)
    analysis: Analysis = field(default_factory=Analysis)

    @staticmethod
    def canary(group: str, percent: int, bake: _dt.timedelta) -> "Canary":
        """``percent`` of the traffic for ``bake``, then all of it."""
        return Canary(group, [TrafficStep(percent, bake), TrafficStep(100)])

    @staticmethod
    def linear(group: str, percent: int, every: _dt.timedelta) -> "Canary":
        """``percent`` more of the traffic every ``every``, until all of it."""
        weights = list(range(percent, 100, max(1, percent)))
        return Canary(group, [TrafficStep(w, every) for w in weights] + [TrafficStep(100)])

    def _to_rust(self) -> Dict[str, Any]:
        return {"Canary": _fields(self)}


_STRATEGIES: Dict[str, type] = {"Rolling": Rolling, "BlueGreen": BlueGreen, "Canary": Canary}


@dataclass(**_kw)
class Deployment:
    """How a service moves to a new revision (see docs/deploy.md)."""

    strategy: Union[Rolling, BlueGreen, Canary] = field(default_factory=Rolling)
    progress_deadline: _dt.timedelta = _dt.timedelta(minutes=10)

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        (name, inner), = data["strategy"].items()
        if name == "Rolling":
            strategy: Any = Rolling(_count_from_rust(inner["max_surge"]),
                                    _count_from_rust(inner["max_unavailable"]))
        else:
            strategy = _build_cls(_STRATEGIES[name], inner)
        return {**data, "strategy": strategy}


@dataclass(**_kw)
class ServiceSpec:
    name: str
    container: ContainerSpec
    replicas: int = 1
    target_group: Optional[str] = None
    subnets: Optional[List[str]] = None
    security_groups: Optional[List[str]] = None
    deployment: Optional[Deployment] = None


@dataclass(**_kw)
class ContainerInstance:
    id: str
    state: str
    vm: Optional[str]
    address: Optional[str]
    restarts: int
    started: Optional[_dt.datetime]
    revision: int = 0
    set: str = "primary"


@dataclass(**_kw)
class ListenerForward:
    load_balancer: str
    port: int
    forward: List[Tuple[str, int]]


@dataclass(**_kw)
class Rollout:
    """A deployment in progress: ``state`` is ``InProgress``, ``AwaitingPromotion``,
    ``Promoted``, ``RollingBack`` or ``RollbackRequested``."""

    revision: int
    from_: int
    strategy: str
    state: str
    weight: Optional[int] = None
    restore: List[ListenerForward] = field(default_factory=list)

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        return {**data, "from_": data.get("from")}


@dataclass(**_kw)
class RevisionSet:
    id: str
    revision: int
    target_group: Optional[str]
    replicas: int


@dataclass(**_kw)
class ServiceEvent:
    at: _dt.datetime
    message: str


@dataclass(**_kw)
class Revision:
    """One revision: ``state`` is ``Deploying``, ``Active``, ``Superseded`` or ``RolledBack``."""

    number: int
    container: ContainerSpec
    created: _dt.datetime
    state: str
    reason: Optional[str] = None


@dataclass(**_kw)
class ServiceInfo:
    spec: ServiceSpec
    instances: List[ContainerInstance]
    revision: int = 0
    sets: List[RevisionSet] = field(default_factory=list)
    rollout: Optional[Rollout] = None
    stable: bool = False
    events: List[ServiceEvent] = field(default_factory=list)


@dataclass(**_kw)
class TaskResult:
    id: str
    exit_code: Optional[int]
    log_stream: Tuple[str, str]
    started: _dt.datetime
    finished: _dt.datetime


@dataclass(**_kw)
class ScheduleSpec:
    name: str
    cron: str
    container: ContainerSpec


def _durations(v: Any) -> Any:
    """A JSON value with every ``{"secs", "nanos"}`` (a Rust ``Duration``) as a timedelta."""
    if isinstance(v, dict):
        if set(v) == {"secs", "nanos"}:
            return _dt.timedelta(seconds=v["secs"], microseconds=v["nanos"] // 1000)
        return {k: _durations(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_durations(x) for x in v]
    return v


@dataclass(**_kw)
class ScalingDecision:
    """One evaluation of a scaler: the replicas before (``current``), each metric's proposal
    (``None`` without data), the count set or kept (``desired``), why (``limit``, such as
    ``"desired_within_range"`` or ``"scale_down_stabilized"``), the bounds in force, whether
    it scaled, and why it held back (``held``)."""

    at: _dt.datetime
    service: str
    current: int
    proposals: List[Optional[int]]
    desired: int
    limit: str
    min: int
    max: int
    scaled: bool
    held: Optional[str] = None


@dataclass(**_kw)
class ScalerInfo:
    """A scaler as the backend runs it: ``spec`` (the dict ``put_scaler`` takes, durations as
    timedeltas, so it can be changed and put again), the bounds in force, when it last
    evaluated and its last decisions, oldest first (none on AWS: see docs/autoscaling.md)."""

    spec: Dict[str, Any]
    min: int
    max: int
    last: Optional[_dt.datetime] = None
    decisions: List[ScalingDecision] = field(default_factory=list)

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        return {**data, "spec": _durations(data.get("spec"))}


# ---------------------------------------------------------------- Load Balancer
@dataclass(**_kw)
class TargetGroupSpec:
    """``protocol``: ``"Http"`` or ``"Tcp"``; ``algorithm``: ``"RoundRobin"`` or
    ``"LeastOutstandingRequests"``."""

    name: str
    protocol: str = "Http"
    vpc: Optional[str] = None
    health_check: Optional[HealthCheck] = None
    algorithm: Optional[str] = None
    deregistration_delay: Optional[_dt.timedelta] = None


@dataclass(**_kw)
class ListenerSpec:
    port: int
    forward: List[Tuple[str, int]]
    protocol: str = "Http"


@dataclass(**_kw)
class LoadBalancerSpec:
    name: str
    listeners: List[ListenerSpec]
    subnets: Optional[List[str]] = None
    security_groups: Optional[List[str]] = None


@dataclass(**_kw)
class LoadBalancerInfo:
    spec: LoadBalancerSpec
    dns_name: str
    urls: List[str]


@dataclass(**_kw)
class TargetStatus:
    target: str
    health: str
    reason: str


# ---------------------------------------------------------------- Database
@dataclass(**_kw)
class DatabaseSpec:
    name: str
    engine: Optional[str] = None
    version: Optional[str] = None
    size: Optional[str] = None
    storage_gib: Optional[int] = None
    multi_az: Optional[bool] = None
    backup_retention_days: Optional[int] = None
    subnets: Optional[List[str]] = None
    security_groups: Optional[List[str]] = None


@dataclass(**_kw)
class DatabaseEvent:
    at: _dt.datetime
    message: str


@dataclass(**_kw)
class DatabaseInfo:
    """``zone`` is the primary's, ``standby_zone`` a multi-AZ instance's standby's (``None``
    while a new one is built); ``events`` say what happened to it (failovers, reboots);
    ``latest_restorable_time`` is how far a point-in-time restore can reach (``None`` without
    backups, or before the first WAL is archived)."""

    spec: DatabaseSpec
    state: str
    endpoint: str
    created: _dt.datetime
    zone: Optional[str] = None
    standby_zone: Optional[str] = None
    events: List[DatabaseEvent] = field(default_factory=list)
    latest_restorable_time: Optional[_dt.datetime] = None


@dataclass(**_kw)
class Credentials:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    url: str = field(repr=False)


@dataclass(**_kw)
class SnapshotInfo:
    name: str
    database: str
    created: _dt.datetime
    size: int


# ---------------------------------------------------------------- VM
@dataclass(**_kw)
class VmSpec:
    name: str
    size: str
    image: str
    subnet: str
    security_groups: Optional[List[str]] = None
    user_data: Optional[str] = None
    tags: Optional[Dict[str, str]] = None


@dataclass(**_kw)
class VmInfo:
    id: str
    spec: VmSpec
    state: str
    zone: str
    vcpus: int
    memory_mib: int
    private_ip: str
    launched: _dt.datetime


# ---------------------------------------------------------------- VPC
@dataclass(**_kw)
class VpcInfo:
    id: str
    cidr: str
    tags: Dict[str, str]


@dataclass(**_kw)
class SubnetInfo:
    id: str
    vpc: str
    cidr: str
    zone: str
    public: bool


@dataclass(**_kw)
class Rule:
    """A security group rule: ``direction`` ``"Ingress"`` or ``"Egress"``, a port range, and
    the peer: a ``cidr`` or another security ``group`` (one of the two)."""

    direction: str
    from_port: int
    to_port: int
    cidr: Optional[str] = None
    group: Optional[Union[str, Output]] = None

    def _to_rust(self) -> Dict[str, Any]:
        if (self.cidr is None) == (self.group is None):
            raise ValueError("Rule: give exactly one of cidr= or group=")
        peer = {"Cidr": self.cidr} if self.cidr is not None else {"Group": self.group}
        return {"direction": self.direction, "from_port": self.from_port,
                "to_port": self.to_port, "peer": peer}

    @staticmethod
    def _from_rust(data: Dict[str, Any]) -> Dict[str, Any]:
        data = dict(data)
        peer = data.pop("peer", {}) or {}
        data["cidr"] = peer.get("Cidr")
        data["group"] = peer.get("Group")
        return data


@dataclass(**_kw)
class SecurityGroupInfo:
    id: str
    name: str
    vpc: str
    rules: List[Rule]


# ---------------------------------------------------------------- Stacks
@dataclass(**_kw)
class PropDiff:
    """One property's change: old and new values as shown (secrets as ``"[secret]"``,
    unknown ones as ``"(known after apply)"``); ``replaces``: the change needs a replacement."""

    name: str
    old: Optional[str]
    new: Optional[str]
    replaces: bool = False


@dataclass(**_kw)
class Step:
    """One step of a plan: ``op`` is ``same``, ``create``, ``update``, ``replace``,
    ``delete``, ``import`` or ``refresh``."""

    urn: str
    type_name: str
    name: str
    parent: Optional[str]
    op: str
    diffs: List[PropDiff]


@dataclass(**_kw)
class Drift:
    """A resource found changed (or ``deleted``) out of band by a refresh."""

    urn: str
    deleted: bool
    diffs: List[PropDiff]


@dataclass(**_kw, repr=False)
class Plan:
    """What ``up`` (or ``destroy``) would do; ``str(plan)`` renders it like ``pulumi preview``."""

    stack: str
    steps: List[Step]
    drift: List[Drift]
    text: str

    def count(self, op: str) -> int:
        """How many steps do ``op``."""
        return sum(1 for s in self.steps if s.op == op)

    def is_empty(self) -> bool:
        """Whether nothing would change."""
        return all(s.op == "same" for s in self.steps)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        counts: Dict[str, int] = {}
        for s in self.steps:
            counts[s.op] = counts.get(s.op, 0) + 1
        inner = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        return f"Plan({inner or 'empty'})"


@dataclass(**_kw, repr=False)
class Report:
    """What an operation did: its plan (the steps run) and the stack's outputs after it."""

    plan: Plan
    outputs: Dict[str, Any]
    duration: _dt.timedelta

    def __repr__(self) -> str:
        return f"Report({self.plan!r}, outputs={sorted(self.outputs)}, duration={self.duration})"


@dataclass(**_kw)
class Event:
    """A progress event: ``kind`` is ``started``, ``finished``, ``failed``, ``skipped``,
    ``progress`` (how a running step is going: ``message``) or ``notice`` (about the whole
    run, such as a stale lock taken over: ``message``)."""

    kind: str
    urn: str
    op: str
    duration: Optional[_dt.timedelta] = None
    error: Optional[str] = None
    message: Optional[str] = None


# ---------------------------------------------------------------- conversion
def _fields(obj: Any) -> Dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _is_record(obj: Any) -> bool:
    """Whether ``obj`` is a dataclass instance (a request record)."""
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _shallow(obj: Any) -> Dict[str, Any]:
    """A dataclass's fields in its Rust shape, one level deep (values left as they are, so
    ``Output``s inside are kept); ``None`` fields are left out."""
    hook = getattr(obj, "_to_rust", None)
    data = hook() if hook is not None else _fields(obj)
    return {k: v for k, v in data.items() if v is not None}


def _to_json(obj: Any) -> Any:
    """A dataclass (or plain value) as the JSON the Rust type deserializes. ``None`` fields of
    a dataclass are left out, so the Rust side's defaults apply."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        hook = getattr(obj, "_to_rust", None)
        data = hook() if hook is not None else _fields(obj)
        return {k: _to_json(v) for k, v in data.items() if v is not None}
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, _dt.datetime):
        if obj.tzinfo is None:
            raise ValueError(f"datetime {obj} has no time zone; give an aware datetime (UTC)")
        return obj.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(obj, _dt.timedelta):
        if obj < _dt.timedelta(0):
            raise ValueError(f"duration {obj} is negative")
        whole = obj.days * 86400 + obj.seconds
        return {"secs": whole, "nanos": obj.microseconds * 1000}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return list(bytes(obj))
    return obj


def _parse_time(s: Any) -> Any:
    if not isinstance(s, str):
        return s
    # chrono writes RFC 3339 with up to 9 fractional digits and "Z"; Python 3.9's
    # fromisoformat wants +00:00 and at most 6 digits.
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        n = 0
        while n < len(rest) and rest[n].isdigit():
            n += 1
        digits = rest[:n]
        zone = rest[len(digits):]
        s = f"{head}.{(digits + '000000')[:6]}{zone}"
    return _dt.datetime.fromisoformat(s)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if tp is _dt.datetime:
        return _parse_time(value)
    if tp is _dt.timedelta:
        if isinstance(value, dict):
            return _dt.timedelta(seconds=value.get("secs", 0), microseconds=value.get("nanos", 0) // 1000)
        return value
    if tp is bytes and isinstance(value, list):
        return bytes(value)
    if origin in (list, List):
        return [_convert(args[0], v) for v in value] if args else list(value)
    if origin in (tuple, Tuple):
        return tuple(_convert(a, v) for a, v in zip(args, value)) if args else tuple(value)
    if origin in (dict, Dict):
        return {k: _convert(args[1], v) for k, v in value.items()} if args else dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return _build_cls(tp, value)
    return value


_hints: Dict[type, Dict[str, Any]] = {}


def _build_cls(cls: type, data: Dict[str, Any]) -> Any:
    hook = getattr(cls, "_from_rust", None)
    if hook is not None:
        data = hook(data)
    hints = _hints.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls, vars(sys.modules[__name__]))
        _hints[cls] = hints
    kwargs = {f.name: _convert(hints[f.name], data.get(f.name)) for f in dataclasses.fields(cls)
              if f.name in data}
    return cls(**kwargs)


def _build(name: str, data: Any) -> Any:
    """The dataclass ``name`` from the JSON of the Rust value (lists map element-wise)."""
    cls = globals()[name]
    if isinstance(data, list):
        return [_build_cls(cls, d) for d in data]
    return _build_cls(cls, data)
