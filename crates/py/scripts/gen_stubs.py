"""Writes python/mvi/_mvi.pyi, the type stubs of the native module, from one table per
service (the blocking and the asyncio class share it). Run after changing a signature;
`stubtest mvi` (in the test command) checks the stubs against the built module.

    python crates/py/scripts/gen_stubs.py
"""

import pathlib

OUT = pathlib.Path(__file__).resolve().parents[1] / "python" / "mvi" / "_mvi.pyi"

B = "Union[bytes, bytearray, str]"
SERVICES = {
    "Blob": """
create_bucket(self, bucket: str) -> BucketInfo
delete_bucket(self, bucket: str) -> None
list_buckets(self) -> List[BucketInfo]
put(self, bucket: str, key: str, data: B, *, content_type: Optional[str] = None, metadata: Optional[Dict[str, str]] = None, if_none_match: bool = False, if_match: Optional[str] = None) -> ObjectMeta
get(self, bucket: str, key: str) -> bytes
get_object(self, bucket: str, key: str, *, start: Optional[int] = None, end: Optional[int] = None, suffix: Optional[int] = None, if_match: Optional[str] = None, if_none_match: Optional[str] = None) -> ObjectBody
head_object(self, bucket: str, key: str) -> ObjectMeta
delete_object(self, bucket: str, key: str) -> None
copy_object(self, from_bucket: str, from_key: str, to_bucket: str, to_key: str) -> ObjectMeta
list_objects(self, bucket: str, *, prefix: Optional[str] = None, delimiter: Optional[str] = None, max_keys: Optional[int] = None, continuation: Optional[str] = None) -> ListPage
list_all(self, bucket: str, prefix: str = ...) -> List[ObjectMeta]
create_multipart_upload(self, bucket: str, key: str, content_type: Optional[str] = None) -> str
upload_part(self, bucket: str, key: str, upload_id: str, number: int, data: B) -> str
complete_multipart_upload(self, bucket: str, key: str, upload_id: str, parts: Sequence[Union[CompletedPart, Tuple[int, str]]]) -> ObjectMeta
abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None
""",
    "Kv": """
create_table(self, name: str, partition_key: _KeyAttrLike, sort_key: Optional[_KeyAttrLike] = None) -> TableInfo
delete_table(self, name: str) -> None
describe_table(self, name: str) -> TableInfo
list_tables(self) -> List[str]
put_item(self, table: str, item: _Item, *, if_not_exists: bool = False, if_exists: bool = False, if_equals: Optional[Tuple[str, Any]] = None, condition: Optional[str] = None, names: Optional[Dict[str, str]] = None, values: Optional[Dict[str, Any]] = None) -> None
update_item(self, table: str, partition: Any, sort: Optional[Any] = None, *, update: str, condition: Optional[str] = None, names: Optional[Dict[str, str]] = None, values: Optional[Dict[str, Any]] = None, returns: str = ...) -> Optional[_Item]
get_item(self, table: str, partition: Any, sort: Optional[Any] = None) -> Optional[_Item]
delete_item(self, table: str, partition: Any, sort: Optional[Any] = None, *, if_exists: bool = False, if_equals: Optional[Tuple[str, Any]] = None, condition: Optional[str] = None, names: Optional[Dict[str, str]] = None, values: Optional[Dict[str, Any]] = None) -> Optional[_Item]
query(self, table: str, partition: Any, *, sort: Optional[Tuple[str, Any]] = None, descending: bool = False, limit: Optional[int] = None, cursor: Optional[str] = None) -> ItemPage
query_all(self, table: str, partition: Any, *, sort: Optional[Tuple[str, Any]] = None, descending: bool = False) -> List[_Item]
scan(self, table: str, *, limit: Optional[int] = None, cursor: Optional[str] = None) -> ItemPage
batch_get(self, table: str, keys: List[Any]) -> List[_Item]
batch_put(self, table: str, items: List[_Item]) -> None
""",
    "Crypto": """
create_key(self, description: str = ..., *, alias: Optional[str] = None) -> KeyMetadata
import_key(self, material: B, description: str = ..., *, alias: Optional[str] = None) -> KeyMetadata
describe_key(self, key: str) -> KeyMetadata
list_keys(self) -> List[KeyMetadata]
enable_key(self, key: str) -> None
disable_key(self, key: str) -> None
schedule_key_deletion(self, key: str, pending_days: int = 30) -> datetime.datetime
cancel_key_deletion(self, key: str) -> None
delete_alias(self, alias: str) -> None
rotate_key(self, key: str) -> int
encrypt(self, key: str, plaintext: B, context: Optional[Dict[str, str]] = None) -> bytes
decrypt(self, ciphertext: B, context: Optional[Dict[str, str]] = None) -> Decrypted
generate_data_key(self, key: str, context: Optional[Dict[str, str]] = None) -> DataKey
audit_events(self, *, key_id: Optional[str] = None, since: Optional[datetime.datetime] = None, limit: Optional[int] = None) -> List[AuditEvent]
""",
    "Logs": """
create_group(self, group: str, retention_days: Optional[int] = None) -> LogGroup
delete_group(self, group: str) -> None
list_groups(self) -> List[LogGroup]
set_retention(self, group: str, retention_days: Optional[int] = None) -> None
create_stream(self, group: str, stream: str) -> LogStream
list_streams(self, group: str) -> List[LogStream]
put_events(self, group: str, stream: str, events: Sequence[Union[LogEvent, Tuple[datetime.datetime, str]]]) -> None
get_events(self, group: str, stream: str, *, start: Optional[datetime.datetime] = None, end: Optional[datetime.datetime] = None, limit: Optional[int] = None, cursor: Optional[str] = None) -> RecordPage
filter_events(self, group: str, pattern: str = ..., *, streams: Optional[List[str]] = None, start: Optional[datetime.datetime] = None, end: Optional[datetime.datetime] = None, limit: Optional[int] = None, cursor: Optional[str] = None) -> RecordPage
tail(self, group: str, *, pattern: str = ..., streams: Optional[List[str]] = None, since: Optional[datetime.datetime] = None) -> LogTail
""",
    "Metrics": """
put_data(self, namespace: str, data: Sequence[Datum]) -> None
get_statistics(self, metric: MetricId, start: datetime.datetime, end: datetime.datetime, period: Union[datetime.timedelta, float], statistics: Sequence[str]) -> List[Datapoint]
list_metrics(self, namespace: Optional[str] = None, name: Optional[str] = None) -> List[MetricId]
put_alarm(self, spec: AlarmSpec) -> None
delete_alarm(self, name: str) -> None
describe_alarms(self, prefix: Optional[str] = None) -> List[Alarm]
alarm_history(self, name: str) -> List[AlarmTransition]
""",
    "Images": """
create_repository(self, name: str) -> Repository
delete_repository(self, name: str, force: bool = False) -> None
list_repositories(self) -> List[Repository]
push_blob(self, repository: str, digest: str, data: B) -> None
pull_blob(self, repository: str, digest: str) -> bytes
push_manifest(self, repository: str, manifest: Manifest, tag: Optional[str] = None) -> str
pull_manifest(self, repository: str, reference: str) -> Tuple[str, Manifest]
tag(self, repository: str, digest: str, tag: str) -> None
list_images(self, repository: str) -> List[ImageInfo]
build_from_dir(self, repository: str, dir: Union[str, os.PathLike[str]], config: Optional[ImageConfig] = None, tag: Optional[str] = None) -> str
delete_image(self, repository: str, reference: str) -> None
""",
    "Containers": """
create_service(self, spec: ServiceSpec) -> ServiceInfo
update_service(self, spec: ServiceSpec) -> ServiceInfo
scale_service(self, name: str, replicas: int) -> ServiceInfo
describe_service(self, name: str) -> ServiceInfo
list_revisions(self, name: str) -> List[Revision]
list_services(self) -> List[ServiceInfo]
delete_service(self, name: str) -> None
run_task(self, name: str, spec: ContainerSpec, timeout: Union[datetime.timedelta, float]) -> TaskResult
put_schedule(self, spec: ScheduleSpec) -> None
delete_schedule(self, name: str) -> None
list_schedules(self) -> List[ScheduleSpec]
put_scaler(self, spec: Dict[str, Any]) -> ScalerInfo
describe_scaler(self, service: str) -> ScalerInfo
delete_scaler(self, service: str) -> None
""",
    "LoadBalancers": """
create_target_group(self, spec: TargetGroupSpec) -> None
delete_target_group(self, name: str) -> None
register_targets(self, group: str, targets: List[str]) -> None
deregister_targets(self, group: str, targets: List[str]) -> None
target_health(self, group: str) -> List[TargetStatus]
create_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancerInfo
set_weights(self, lb: str, port: int, forward: List[Tuple[str, int]]) -> None
describe_load_balancer(self, name: str) -> LoadBalancerInfo
list_load_balancers(self) -> List[LoadBalancerInfo]
delete_load_balancer(self, name: str) -> None
""",
    "Databases": """
create_database(self, spec: DatabaseSpec) -> DatabaseInfo
describe_database(self, name: str) -> DatabaseInfo
list_databases(self) -> List[DatabaseInfo]
credentials(self, name: str) -> Credentials
delete_database(self, name: str) -> None
reboot_database(self, name: str, force_failover: bool) -> DatabaseInfo
create_snapshot(self, database: str, snapshot: str) -> SnapshotInfo
list_snapshots(self, database: Optional[str] = None) -> List[SnapshotInfo]
restore_snapshot(self, snapshot: str, spec: DatabaseSpec) -> DatabaseInfo
restore_to_point_in_time(self, source: str, spec: DatabaseSpec, *, time: Optional[datetime.datetime] = None) -> DatabaseInfo
delete_snapshot(self, snapshot: str) -> None
""",
    "Vms": """
run_instance(self, spec: VmSpec) -> VmInfo
describe_instance(self, id: str) -> VmInfo
list_instances(self) -> List[VmInfo]
start_instance(self, id: str) -> VmInfo
stop_instance(self, id: str) -> VmInfo
terminate_instance(self, id: str) -> None
""",
    "Networks": """
list_zones(self) -> List[str]
create_vpc(self, cidr: str, tags: Optional[Dict[str, str]] = None) -> VpcInfo
delete_vpc(self, id: str) -> None
list_vpcs(self) -> List[VpcInfo]
create_subnet(self, vpc: str, cidr: str, zone: str, public: bool = False) -> SubnetInfo
delete_subnet(self, id: str) -> None
list_subnets(self, vpc: str) -> List[SubnetInfo]
create_security_group(self, vpc: str, name: str) -> SecurityGroupInfo
authorize(self, group: str, rule: Rule) -> None
revoke(self, group: str, rule: Rule) -> None
describe_security_group(self, id: str) -> SecurityGroupInfo
list_security_groups(self, vpc: str) -> List[SecurityGroupInfo]
delete_security_group(self, id: str) -> None
""",
}

ACCESSORS = [("blob", "Blob"), ("kv", "Kv"), ("crypto", "Crypto"), ("logs", "Logs"),
             ("metrics", "Metrics"), ("images", "Images"), ("containers", "Containers"),
             ("load_balancers", "LoadBalancers"), ("databases", "Databases"), ("vms", "Vms"),
             ("networks", "Networks")]

HEAD = '''# Generated by crates/py/scripts/gen_stubs.py; checked by stubtest in the test command.
import datetime
import os
from typing import Any, Awaitable, Callable, Dict, Iterator, AsyncIterator, List, Optional, Sequence, Tuple, Union, final

from typing_extensions import disjoint_base

from ._types import *
from .resources import ResourceOptions

_Item = Dict[str, Any]
_KeyAttrLike = Union[KeyAttr, Tuple[str, str], str]

__all__ = %(all)s

HAS_AWS: bool
RESOURCE_TYPES: List[str]

def _bench_kv_get(cloud: Cloud, table: str, key: str, n: int) -> float: ...

@final
class LogTail:
    def __iter__(self) -> Iterator[LogRecord]: ...
    def __next__(self) -> LogRecord: ...
    def __aiter__(self) -> AsyncIterator[LogRecord]: ...
    def __anext__(self) -> Awaitable[LogRecord]: ...

@disjoint_base
class Cloud:
%(sync_acc)s
    @property
    def aio(self) -> AsyncCloud: ...
    @property
    def backend(self) -> str: ...
    def deploy(self, spec: ServiceSpec, *, on_progress: Optional[Callable[[str, str], Any]] = None) -> ServiceInfo: ...
    def promote(self, service: str) -> ServiceInfo: ...
    def rollback(self, service: str) -> ServiceInfo: ...

@final
class AsyncCloud:
%(async_acc)s
    def deploy(self, spec: ServiceSpec, *, on_progress: Optional[Callable[[str, str], Any]] = None) -> Awaitable[ServiceInfo]: ...
    def promote(self, service: str) -> Awaitable[ServiceInfo]: ...
    def rollback(self, service: str) -> Awaitable[ServiceInfo]: ...

@final
class LocalCloud(Cloud):
    def __new__(cls, root: Optional[Union[str, os.PathLike[str]]] = None, *, seed: Optional[int] = None, in_memory: bool = False, principal: Optional[str] = None) -> LocalCloud: ...

@final
class AwsCloud(Cloud):
    def __new__(cls, *, region: Optional[str] = None, endpoint_url: Optional[str] = None, profile: Optional[str] = None, access_key_id: Optional[str] = None, secret_access_key: Optional[str] = None, force_path_style: Optional[bool] = None) -> AwsCloud: ...

@final
class Output:
    def apply(self, f: Callable[[Any], Any]) -> Output: ...
    def secret(self) -> Output: ...
    @staticmethod
    def of_secret(value: Any) -> Output: ...
    @property
    def is_secret(self) -> bool: ...
    @property
    def dependencies(self) -> List[str]: ...
    @staticmethod
    def all(*values: Any) -> Output: ...
    def __bool__(self) -> bool: ...

@disjoint_base
class Stack:
    def __new__(cls, name: str, cloud: Cloud, state_dir: str = ...) -> Stack: ...
    @property
    def name(self) -> str: ...
    def component(self, type_name: str, name: str) -> Stack: ...
    def _declare(self, type_name: str, name: str, args: Dict[str, Any], opts: Optional[ResourceOptions] = None) -> Tuple[str, Dict[str, Output]]: ...
    def export(self, name: str, output: Any) -> None: ...
    def preview(self, *, refresh: bool = True, targets: Optional[Sequence[str]] = None, target_dependents: bool = False) -> Plan: ...
    def up(self, *, refresh: bool = True, parallelism: Optional[int] = None, on_event: Optional[Callable[[Event], Any]] = None, targets: Optional[Sequence[str]] = None, target_dependents: bool = False) -> Report: ...
    def destroy(self, *, parallelism: Optional[int] = None, on_event: Optional[Callable[[Event], Any]] = None, targets: Optional[Sequence[str]] = None, target_dependents: bool = False) -> Report: ...
    def import_resource(self, type_name: str, name: str, id: str, *, protect: bool = True) -> Tuple[str, str]: ...
    def refresh(self) -> Report: ...
    def outputs(self) -> Dict[str, Any]: ...
    def unlock(self, *, force: bool = False) -> Optional[str]: ...
    def secret_outputs(self) -> List[str]: ...
    def resources(self) -> List[Tuple[str, str, str]]: ...
    def preview_async(self, *, refresh: bool = True, targets: Optional[Sequence[str]] = None, target_dependents: bool = False) -> Awaitable[Plan]: ...
    def up_async(self, *, refresh: bool = True, parallelism: Optional[int] = None, on_event: Optional[Callable[[Event], Any]] = None, targets: Optional[Sequence[str]] = None, target_dependents: bool = False) -> Awaitable[Report]: ...
    def destroy_async(self, *, parallelism: Optional[int] = None, on_event: Optional[Callable[[Event], Any]] = None, targets: Optional[Sequence[str]] = None, target_dependents: bool = False) -> Awaitable[Report]: ...
    def refresh_async(self) -> Awaitable[Report]: ...

@final
class EvalContext:
    def __new__(cls, targeting_key: Optional[str] = None, **attributes: Any) -> EvalContext: ...
    @property
    def targeting_key(self) -> Optional[str]: ...
    @property
    def attributes(self) -> Dict[str, Any]: ...

@final
class Evaluation:
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> Any: ...
    @property
    def variant(self) -> Optional[str]: ...
    @property
    def reason(self) -> str: ...
    @property
    def error_code(self) -> Optional[str]: ...
    @property
    def error_message(self) -> Optional[str]: ...

@final
class Flags:
    def __new__(cls, cloud: Cloud, table: str) -> Flags: ...
    @property
    def table(self) -> str: ...
    def create_table(self) -> None: ...
    def save(self, flag: Dict[str, Any]) -> int: ...
    def get(self, key: str) -> Optional[Dict[str, Any]]: ...
    def list(self) -> List[Dict[str, Any]]: ...
    def delete(self, key: str) -> bool: ...
    def evaluate(self, key: str, default: Any, context: Union[EvalContext, str, Dict[str, Any], None] = None) -> Evaluation: ...
    def client(self, poll: float = 0.25) -> FlagClient: ...

@final
class FlagClient:
    def bool_value(self, key: str, default: bool, context: Union[EvalContext, str, Dict[str, Any], None] = None) -> bool: ...
    def string_value(self, key: str, default: str, context: Union[EvalContext, str, Dict[str, Any], None] = None) -> str: ...
    def number_value(self, key: str, default: float, context: Union[EvalContext, str, Dict[str, Any], None] = None) -> float: ...
    def int_value(self, key: str, default: int, context: Union[EvalContext, str, Dict[str, Any], None] = None) -> int: ...
    def object_value(self, key: str, default: Dict[str, Any], context: Union[EvalContext, str, Dict[str, Any], None] = None) -> Dict[str, Any]: ...
    def evaluate(self, key: str, default: Any, context: Union[EvalContext, str, Dict[str, Any], None] = None) -> Evaluation: ...
    def is_ready(self) -> bool: ...
    def last_error(self) -> Optional[str]: ...
    def keys(self) -> List[str]: ...
    def changes(self) -> int: ...
'''


def main() -> None:
    out = [HEAD % {
        "sync_acc": "\n".join(f"    @property\n    def {a}(self) -> {c}: ..." for a, c in ACCESSORS),
        "all": repr(sorted(["HAS_AWS", "RESOURCE_TYPES", "LogTail", "Cloud", "AsyncCloud", "LocalCloud",
                            "AwsCloud", "Output", "Stack", "_bench_kv_get",
                            "EvalContext", "Evaluation", "Flags", "FlagClient"]
                           + [n for s in SERVICES for n in (s, "Async" + s)])),
        "async_acc": "\n".join(f"    @property\n    def {a}(self) -> Async{c}: ..." for a, c in ACCESSORS),
    }]
    for name, table in SERVICES.items():
        methods = [m.strip().replace(": B", f": {B}") for m in table.strip().splitlines()]
        for cls, wrap in ((name, lambda r: r), ("Async" + name, lambda r: f"Awaitable[{r}]")):
            out.append(f"@final\nclass {cls}:")
            for m in methods:
                sig, ret = m.rsplit(" -> ", 1)
                out.append(f"    def {sig} -> {wrap(ret)}: ...")
            out.append("")
    OUT.write_text("\n".join(out))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
