"""The built-in resource types of stacks, one class per type of ``mvi::stack::resources``.

``Bucket(stack, "assets", name="shop-assets", force_destroy=True)`` declares a resource; its
keyword arguments are the Rust type's arguments (plain values, :class:`~mvi.Output`\\ s, or
structures holding outputs), and the attributes of the object are its outputs
(:class:`~mvi.Output`\\ s). Arguments left out take the Rust constructor's defaults; an
unknown or missing argument raises ``TypeError`` naming it.

A component is a class of your own that groups resources: subclass :class:`Component` and
declare resources with ``self`` as their stack.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

from ._mvi import Output, Stack
from ._types import Grant

__all__ = [
    "Resource", "ResourceOptions", "Component",
    "Bucket", "Table", "Key", "LogGroup", "Alarm", "Vpc", "Subnet", "SecurityGroup", "Vm",
    "Repository", "Image", "ContainerService", "ScheduledTask", "TargetGroup",
    "LoadBalancer", "Database", "Snapshot", "Noop", "Flag", "AutoScaler",
]


@dataclass(frozen=True)
class ResourceOptions:
    """Options of one resource (as ``mvi::stack::ResourceOptions``)."""

    protect: bool = False
    ignore_changes: List[str] = field(default_factory=list)
    replace_on_changes: List[str] = field(default_factory=list)
    delete_before_replace: bool = False
    timeout: Optional[_dt.timedelta] = None
    import_: Optional[str] = None
    depends_on: Sequence[Union[str, "Resource"]] = ()


Scope = Union[Stack, "Component"]


def _stack_of(scope: Scope) -> Stack:
    if isinstance(scope, Component):
        return scope.stack
    if isinstance(scope, Stack):
        return scope
    raise TypeError(f"expected a Stack or a Component, got {type(scope).__name__}")


class Component:
    """A group of resources shown as one node (``WebService "web"``): subclass it, call
    ``super().__init__(scope, name)`` and declare the parts with ``self`` as their stack.
    ``type_name`` defaults to the class name."""

    type_name: Optional[str] = None

    def __init__(self, scope: Scope, component_name: str, /) -> None:
        self.component_name = component_name
        self.stack: Stack = _stack_of(scope).component(
            self.type_name or type(self).__name__, component_name)


class Resource:
    """A declared resource: ``urn``, and its outputs as attributes."""

    type_name: str = ""
    urn: str
    outputs: Dict[str, Output]

    def __init__(self, scope: Scope, resource_name: str, /, *,
                 opts: Optional[ResourceOptions] = None, **args: Any) -> None:
        urn, outputs = _stack_of(scope)._declare(self.type_name, resource_name, args, opts)
        self.resource_name = resource_name
        self.urn = urn
        self.outputs = dict(outputs)

    def __getattr__(self, prop: str) -> Output:
        outputs = self.__dict__.get("outputs", {})
        if prop in outputs:
            return outputs[prop]
        raise AttributeError(
            f"{type(self).__name__} has no output {prop!r}; its outputs are: {', '.join(outputs)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.urn!r})"


class Bucket(Resource):
    """A Blob bucket: ``name``, ``force_destroy``. Outputs: ``name``. ``grant_read()`` and
    ``grant_read_write()`` are grants of it for ``ContainerService(grants=[...])``."""
    type_name = "Bucket"

    def grant_read(self) -> Output:
        return self.name.apply(Grant.bucket_read)

    def grant_read_write(self) -> Output:
        return self.name.apply(Grant.bucket_read_write)


class Table(Resource):
    """A KV table: ``name``, ``partition_key`` (``KeyAttr`` or ``(name, kind)``),
    ``sort_key``. Outputs: ``name``. ``grant_read()`` and ``grant_read_write()`` are grants
    of it."""
    type_name = "Table"

    def grant_read(self) -> Output:
        return self.name.apply(Grant.table_read)

    def grant_read_write(self) -> Output:
        return self.name.apply(Grant.table_read_write)


class AutoScaler(Resource):
    """A container service's scaler, run by the backend: ``service``, ``min``, ``max``,
    ``metrics`` (``[{"cpu": {"target": 60}}, {"requests_per_replica": {"target_group": "web",
    "target": 50}}]``), ``behavior``, ``schedules``, ``period``, ``tolerance``. Outputs:
    ``service``."""
    type_name = "AutoScaler"


class Flag(Resource):
    """A feature flag in a flags table: ``table``, ``flag`` (a dict, see ``mvi.flags``; its
    ``key`` is the resource's ``key``). Outputs: ``key``, ``version``."""
    type_name = "Flag"

    def __init__(self, scope: Scope, resource_name: str, /, *, flag: Any,
                 opts: Optional[ResourceOptions] = None, **args: Any) -> None:
        if "key" not in args and isinstance(flag, dict) and "key" in flag:
            args["key"] = flag["key"]
        super().__init__(scope, resource_name, flag=flag, opts=opts, **args)


class Key(Resource):
    """A Crypto key: ``alias``, ``description``, ``deletion_window_days``. Outputs: ``id``,
    ``alias``. ``grant_decrypt()`` and ``grant_encrypt()`` are grants of it."""
    type_name = "Key"

    def grant_decrypt(self) -> Output:
        return self.id.apply(Grant.key_decrypt)

    def grant_encrypt(self) -> Output:
        return self.id.apply(Grant.key_encrypt)


class LogGroup(Resource):
    """A log group: ``name``, ``retention_days``. Outputs: ``name``. ``grant_write()`` is a
    grant of writing its streams."""
    type_name = "LogGroup"

    def grant_write(self) -> Output:
        return self.name.apply(Grant.log_group_write)


class Alarm(Resource):
    """A metric alarm: the fields of ``AlarmSpec``. Outputs: ``name``."""
    type_name = "Alarm"


class Vpc(Resource):
    """A VPC: ``cidr``, ``tags``. Outputs: ``id``, ``cidr``."""
    type_name = "Vpc"


class Subnet(Resource):
    """A subnet: ``vpc``, ``cidr``, ``zone``, ``public``. Outputs: ``id``, ``zone``, ..."""
    type_name = "Subnet"


class SecurityGroup(Resource):
    """A security group: ``vpc``, ``name``, ``rules`` (``Rule``\\ s). Outputs: ``id``."""
    type_name = "SecurityGroup"


class Vm(Resource):
    """A VM: ``name``, ``size``, ``image``, ``subnet``, ``security_groups``, ``user_data``,
    ``tags``. Outputs: ``id``, ``private_ip``, ``zone``."""
    type_name = "Vm"


class Repository(Resource):
    """An image repository: ``name``, ``force_destroy``. Outputs: ``name``, ``uri``."""
    type_name = "Repository"


class Image(Resource):
    """An image built from a directory: ``repository``, ``dir``, ``config``
    (``ImageConfig``), ``tag``. Outputs: ``digest``, ``reference``."""
    type_name = "Image"


class ContainerService(Resource):
    """A container service: ``name``, ``image``, ``replicas``, ``command``, ``env``,
    ``secret_env`` (with ``secrets_key``), ``port``, ``cpu_millis``, ``memory_mib``,
    ``health_check``, ``target_group``, ``subnets``, ``security_groups``, ``grants`` (a list
    of :class:`~mvi.Grant` or of outputs of one: ``bucket.grant_read_write()``). Outputs:
    ``name``, ``addresses``, ``policy`` (the IAM policy document of its grants, which
    ``preview`` shows as ``outputs.policy``)."""
    type_name = "ContainerService"


class ScheduledTask(Resource):
    """A cron task: ``name``, ``cron``, ``container`` (``ContainerSpec``). Outputs: ``name``."""
    type_name = "ScheduledTask"


class TargetGroup(Resource):
    """A target group: the fields of ``TargetGroupSpec``. Outputs: ``name``."""
    type_name = "TargetGroup"


class LoadBalancer(Resource):
    """A load balancer: ``name``, ``subnets``, ``security_groups``, ``listeners`` (dicts of
    ``protocol``, ``port``, ``target_groups``), ``weights``. Outputs: ``dns_name``, ``urls``,
    ``url``."""
    type_name = "LoadBalancer"


class Database(Resource):
    """A database: the fields of ``DatabaseSpec``. Outputs: ``name``, ``endpoint``, ``url``
    (secret)."""
    type_name = "Database"


class Snapshot(Resource):
    """A database snapshot: ``database``, ``name``. Outputs: ``name``, ``size``."""
    type_name = "Snapshot"


class Noop(Resource):
    """A resource that exists only in the state (for tests): ``value``, ``key``."""
    type_name = "Noop"


