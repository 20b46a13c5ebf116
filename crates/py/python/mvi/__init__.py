"""mvi: the eleven services of Minimum Viable Infrastructure, and typed stacks, from Python.

The same SDK as the Rust crate ``mvi`` (this package is a thin binding over it)::

    import mvi

    cloud = mvi.LocalCloud(root=".mvi", seed=42)      # or mvi.AwsCloud(region="eu-west-1")
    cloud.blob.create_bucket("photos")
    cloud.blob.put("photos", "cat.txt", b"meow")
    print(cloud.blob.get("photos", "cat.txt"))

    stack = mvi.Stack("shop", cloud)
    assets = mvi.resources.Bucket(stack, "assets", name="shop-assets")
    stack.export("bucket", assets.name)
    print(stack.preview())
    stack.up()

Every method blocks (releasing the GIL while Rust works); ``cloud.aio`` has the same services
with methods returning awaitables. Errors are subclasses of :class:`MviError`.
"""

from __future__ import annotations

from . import cli, resources
from ._errors import (
    AlreadyExists,
    DeploymentFailed,
    Internal,
    InvalidArgument,
    MviError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    Timeout,
    Unauthenticated,
    Unavailable,
    Unsupported,
)
from ._mvi import (
    HAS_AWS,
    AsyncBlob,
    AsyncCloud,
    AsyncContainers,
    AsyncCrypto,
    AsyncDatabases,
    AsyncImages,
    AsyncKv,
    AsyncLoadBalancers,
    AsyncLogs,
    AsyncMetrics,
    AsyncNetworks,
    AsyncVms,
    AwsCloud,
    Blob,
    Cloud,
    Containers,
    Crypto,
    Databases,
    Images,
    Kv,
    LoadBalancers,
    LocalCloud,
    Logs,
    LogTail,
    Metrics,
    Networks,
    Output,
    Stack,
    Vms,
    EvalContext,
    Evaluation,
    Flags,
    FlagClient,
)
from ._types import *  # noqa: F401,F403  (the request and result dataclasses)
from .resources import Component, Resource, ResourceOptions
from . import flags

def secret(value: object) -> "Output":
    """A secret made from a plain value (a token read from the environment): encrypted in the
    state, masked in previews, errors and events. Usable in any stack."""
    return Output.of_secret(value)


__all__ = [
    "secret", "cli",
    "HAS_AWS", "Cloud", "AsyncCloud", "LocalCloud", "AwsCloud",
    "Blob", "Kv", "Crypto", "Logs", "LogTail", "Metrics", "Images", "Containers",
    "LoadBalancers", "Databases", "Vms", "Networks",
    "AsyncBlob", "AsyncKv", "AsyncCrypto", "AsyncLogs", "AsyncMetrics", "AsyncImages",
    "AsyncContainers", "AsyncLoadBalancers", "AsyncDatabases", "AsyncVms", "AsyncNetworks",
    "Stack", "Output", "Resource", "ResourceOptions", "Component", "resources",
    "Flags", "FlagClient", "EvalContext", "Evaluation", "flags",
    "MviError", "NotFound", "AlreadyExists", "PreconditionFailed", "InvalidArgument",
    "PermissionDenied", "Unauthenticated", "RateLimited", "Unavailable", "Unsupported",
    "Timeout", "Internal", "DeploymentFailed",
    # the dataclasses of mvi._types
    'BucketInfo', 'ObjectMeta', 'ObjectBody', 'ListPage', 'CompletedPart', 'KeyAttr',
    'TableSpec', 'TableInfo', 'ItemPage', 'KeyMetadata', 'Decrypted', 'DataKey',
    'AuditEvent', 'LogGroup', 'LogStream', 'LogEvent', 'LogRecord', 'RecordPage',
    'MetricId', 'Datum', 'Datapoint', 'AlarmSpec', 'Alarm', 'AlarmTransition', 'Repository',
    'ImageConfig', 'Descriptor', 'Manifest', 'ImageInfo', 'HealthCheck', 'SecretRef',
    'Grant', 'ContainerSpec', 'ServiceSpec', 'ContainerInstance', 'ServiceInfo', 'TaskResult',
    'ScheduleSpec', 'ScalingDecision', 'ScalerInfo', 'TargetGroupSpec', 'ListenerSpec', 'LoadBalancerSpec',
    'LoadBalancerInfo', 'TargetStatus', 'DatabaseSpec', 'DatabaseEvent', 'DatabaseInfo', 'Credentials',
    'SnapshotInfo', 'VmSpec', 'VmInfo', 'VpcInfo', 'SubnetInfo', 'Rule',
    'SecurityGroupInfo', 'PropDiff', 'Step', 'Drift', 'Plan', 'Report', 'Event',
    'Count', 'Rolling', 'TrafficStep', 'Analysis', 'BlueGreen', 'Canary', 'Deployment',
    'ListenerForward', 'Rollout', 'RevisionSet', 'ServiceEvent', 'Revision',
]
