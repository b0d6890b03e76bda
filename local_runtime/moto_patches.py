"""Make moto's DynamoDB safe to use concurrently (server mode, many client threads).

moto 5.2.5 `transact_write_items` deep-copies every table it touches before writing and, when the
transaction is cancelled, restores those copies wholesale. Under concurrency that (a) raises
`RuntimeError: dictionary changed size during iteration` while another thread writes, and (b) erases
writes that other threads committed between the copy and the rollback: lost updates that real DynamoDB
never produces. We serialize the DynamoDB backend's operations behind one lock so each request is
atomic with respect to the others, as DynamoDB's are. Measured: 1,000 events x 3 deliveries over 8
threads recorded 710 events without this patch and exactly 1,000 with it.

Queries: moto sorts the whole table for every Query; `_query_reads_one_partition` gives its code the partition
only (same answers; the usage storm test took 693 s in a CI rehearsal before it, 156 s alone after).

With the lock held, a transaction no longer needs whole-table copies: `_transact_write_items` checks
every condition first and writes only if all pass (DynamoDB's all-or-nothing), keeping copies of just
the items it touches to undo a write that fails half way (a malformed update expression). The copies
made moto's cost grow with table size: the 1,000-event run took ~250 s with them.

DynamoDB Streams: moto keeps every shard iterator it ever issued (each GetRecords issues a new one), so
a stream poller asking four times a second grows the process by ~25 MB an hour, and it answers an unknown
iterator with HTTP 500 (KeyError). `expire_stream_iterators` gives iterators AWS's documented lifetime of
15 minutes and answers an expired or unknown one with `ExpiredIteratorException`, as DynamoDB Streams does.

Cognito user pools: moto names a pool `<region>_<random>`, like Cognito, and a token's issuer names the pool. A
profile that must know the issuer before the stack exists (to mint the tokens its scripts and tests send, at
import) gives the pool a fixed id; `pin_user_pool_id` renames the pool in moto's backend to it, right after
CreateUserPool and before anything else refers to the pool. This reaches into moto's in-process state, so it
needs moto running in this process (the runtime's ThreadedMotoServer is).

Dispatch: moto's server finds the backend of every request by listing its own package directory (~190 `stat`
calls) and, for a host like `sqs.us-east-1.amazonaws.com`, matching it against hundreds of URL patterns, all under
one lock: about 1.5 ms a request on these machines, more than moto then spends answering a `ReceiveMessage`. The
runtime's pollers make ~100 requests a second while nothing happens (35 SQS sources, 11 stream sources).
`cache_moto_dispatch` lists the directory once and remembers each host's backend: the same answers, computed once."""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_LOCK = threading.RLock()
_PATCHED = False
_STREAMS_LOCK = threading.Lock()
_STREAMS_PATCHED = False
_COGNITO_LOCK = threading.Lock()
STREAM_ITERATOR_LIFETIME_SECONDS = 15 * 60
# iterator ARN -> (issued at, backend that holds it), oldest first
_ISSUED: OrderedDict[str, tuple[float, Any]] = OrderedDict()
_OPERATIONS = (
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "batch_write_item",
    "batch_get_item",
    "transact_write_items",
    "transact_get_items",
    "create_table",
    "delete_table",
    "update_table",
    "describe_table",
)


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    plans: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    reasons: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for transact_item in transact_items:
        if len(transact_item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(transact_item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table_name = op["TableName"]
        table = self.get_table(table_name)
        if op_type == "Put":
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        identity = (str(table_name), str(dict(sorted(key.items()))))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        current = self.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            reasons.append((None, None, None))
        plans.append((op_type, op, key))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    undo: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    try:
        for op_type, op, key in plans:
            if op_type == "ConditionCheck":
                continue
            table_name = op["TableName"]
            before = self.get_item(table_name, key)
            undo.append((table_name, key, before.to_json()["Attributes"] if before else None))
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            else:
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=op.get("ExpressionAttributeNames"),
                    expression_attribute_values=op.get("ExpressionAttributeValues"),
                )
    except Exception:
        for table_name, key, attributes in reversed(undo):
            if attributes is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attributes)
        raise


def _one_stream_record_per_update(update_item: Callable[..., Any]) -> Callable[..., Any]:
    """moto's UpdateItem on a missing item first puts the bare key (one INSERT stream record) and then
    records the update as a second INSERT. DynamoDB emits one INSERT with the whole new item; so do we.
    The shard is detached while moto writes, so no reader can ever see the bare record (an earlier version
    removed it afterwards, and a stream poller reading in between got the bare item and skipped the real
    one). Writers are serialized by `_serialized`, so no other write runs while the shard is detached."""

    @functools.wraps(update_item)
    def wrapper(self: Any, table_name: str, key: Any, *args: Any, **kwargs: Any) -> Any:
        table = self.get_table(table_name)
        shard = table.stream_shard
        if shard is None or self.get_item(table_name, key) is not None:
            return update_item(self, table_name, key, *args, **kwargs)
        table.stream_shard = None
        try:
            result = update_item(self, table_name, key, *args, **kwargs)
        finally:
            table.stream_shard = shard
        created = self.get_item(table_name, key)
        if created is not None:
            shard.add(None, created)
        return result

    return wrapper


def _query_reads_one_partition(query: Callable[..., Any]) -> Callable[..., Any]:
    """moto answers a table's Query (no index) by sorting every item of the table and keeping those of the
    partition: O(table log table) per request. With the usage table's tens of thousands of items that made one
    integration test take 11 minutes. Here the same code runs over the partition's items only (moto keeps them in
    `table.items[hash_key]`): the same items in the same order, whatever the table's size. Runs under `_LOCK`."""
    signature = inspect.signature(query)

    @functools.wraps(query)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        hash_key = bound.arguments.get("hash_key")
        if bound.arguments.get("index_name") or hash_key is None or "all_items" in self.__dict__:
            return query(self, *args, **kwargs)
        partition = self.items.get(hash_key)  # get: no defaultdict insert
        if partition is None:
            members: list[Any] = []
        elif self.range_key_attr:
            members = list(partition.values())
        else:
            members = [partition]
        self.__dict__["all_items"] = lambda: sorted(
            members, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key
        )
        try:
            return query(self, *args, **kwargs)
        finally:
            del self.__dict__["all_items"]

    return wrapper


def make_dynamodb_linearizable() -> None:
    """Idempotent; affects moto servers running in this process."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    Table.query = _query_reads_one_partition(Table.query)  # type: ignore[method-assign]

    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend.update_item = _one_stream_record_per_update(DynamoDBBackend.update_item)  # type: ignore[method-assign]
    for name in _OPERATIONS:
        if hasattr(DynamoDBBackend, name):
            setattr(DynamoDBBackend, name, _serialized(getattr(DynamoDBBackend, name)))
    _PATCHED = True


def _issued(backend: Any, iterator_arn: str) -> None:
    now = time.monotonic()
    _ISSUED[iterator_arn] = (now, backend)
    while _ISSUED:
        oldest, (issued_at, holder) = next(iter(_ISSUED.items()))
        if now - issued_at < STREAM_ITERATOR_LIFETIME_SECONDS:
            return
        del _ISSUED[oldest]
        holder.shard_iterators.pop(oldest, None)


def expire_stream_iterators() -> None:
    """Idempotent; affects moto servers running in this process."""
    global _STREAMS_PATCHED
    if _STREAMS_PATCHED:
        return
    from moto.core.exceptions import JsonRESTError
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    get_shard_iterator = DynamoDBStreamsBackend.get_shard_iterator
    get_records = DynamoDBStreamsBackend.get_records

    def patched_get_shard_iterator(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _STREAMS_LOCK:
            iterator = get_shard_iterator(self, *args, **kwargs)
            _issued(self, iterator.arn)
            return iterator

    def patched_get_records(self: Any, iterator_arn: str, limit: int) -> dict[str, Any]:
        with _STREAMS_LOCK:
            if iterator_arn not in self.shard_iterators:
                raise JsonRESTError(
                    "ExpiredIteratorException",
                    "Iterator expired. The iterator was created over 15 minutes ago (or was never issued).",
                )
            result: dict[str, Any] = get_records(self, iterator_arn, limit)
            _issued(self, result["NextShardIterator"])
            return result

    DynamoDBStreamsBackend.get_shard_iterator = patched_get_shard_iterator  # type: ignore[method-assign]
    DynamoDBStreamsBackend.get_records = patched_get_records  # type: ignore[method-assign]
    _STREAMS_PATCHED = True


class UserPoolPinError(RuntimeError):
    """A user pool cannot be given its fixed id."""


def pin_user_pool_id(arn: str, pinned_id: str) -> str:
    """Rename the user pool of `arn` (just created) to `pinned_id` in moto's backend; its new ARN.

    moto keeps one state per process, not per server: when a pool of another runtime in this process already has
    `pinned_id`, this one takes the id over, and the other stays in the backend under another key - its clients
    still sign in, and their tokens still name `pinned_id` - but calls by pool id reach the new one."""
    from moto.cognitoidp.models import cognitoidp_backends

    parts = arn.split(":", 5)
    region, account_id, created_id = parts[3], parts[4], parts[5].removeprefix("userpool/")
    with _COGNITO_LOCK:
        pools = cognitoidp_backends[account_id][region].user_pools
        pool = pools.pop(created_id, None)
        if pool is None:
            raise UserPoolPinError(
                f"user pool {created_id} is not in this process's moto: a fixed pool id needs moto in-process"
            )
        displaced = pools.pop(pinned_id, None)
        if displaced is not None:
            pools[f"{pinned_id}-displaced-by-{created_id}"] = displaced
        pool.id = pinned_id
        pool.arn = f"{arn.rsplit('/', 1)[0]}/{pinned_id}"
        pools[pinned_id] = pool
        return str(pool.arn)


_DISPATCH_LOCK = threading.Lock()
_DISPATCH_PATCHED = False


def cache_moto_dispatch() -> None:
    """Compute moto's request -> backend lookups once per host (see the module's docstring). Idempotent."""
    global _DISPATCH_PATCHED
    with _DISPATCH_LOCK:
        if _DISPATCH_PATCHED:
            return
        from moto import backends
        from moto.moto_server import werkzeug_app

        modules = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = lambda: modules  # the package never changes
        lookup = werkzeug_app.DomainDispatcherApplication.get_backend_for_host
        found: dict[str, Any] = {}

        def get_backend_for_host(self: Any, host: str | None) -> Any:
            if host is None:
                return None
            if host not in found:  # called under the dispatcher's lock
                found[host] = lookup(self, host)
            return found[host]

        werkzeug_app.DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
        _DISPATCH_PATCHED = True


_SQS_LOCK = threading.Lock()
_SQS_PATCHED = False
SQS_DEDUPLICATION_SECONDS = 5 * 60
_SEQUENCE_DIGITS = 20


def _fifo_send_like_sqs(add_message: Callable[..., Any]) -> Callable[..., Any]:
    """A FIFO queue's send as SQS does it (see `make_sqs_fifo_like_aws`); the append is moto's own (its lock and
    notification). A message moved by a redrive policy is added too, but it was received before
    (`approximate_receive_count` > 0): it keeps what it had."""
    sequence = [time.time_ns() // 1000]  # microseconds: above what an earlier process in this second handed out

    @functools.wraps(add_message)
    def wrapper(self: Any, message: Any) -> Any:
        if not self.fifo_queue or message.approximate_receive_count:
            return add_message(self, message)
        with _SQS_LOCK:
            if message.deduplication_id:
                scope = message.group_id if getattr(self, "deduplication_scope", "queue") == "messageGroup" else None
                sent: dict[tuple[str | None, str], int] = self.__dict__.setdefault("_sent_deduplication_ids", {})
                now = int(message.sent_timestamp)
                horizon = now - SQS_DEDUPLICATION_SECONDS * 1000
                while sent and (oldest := next(iter(sent))) and sent[oldest] < horizon:
                    del sent[oldest]  # insertion order is sending order: expire from the front, not a full scan
                key = (scope, message.deduplication_id)
                if key in sent:
                    return None  # accepted, not delivered: the id was sent within the window
                sent[key] = now
            sequence[0] += 1
            message.sequence_number = str(sequence[0]).zfill(_SEQUENCE_DIGITS)
        if self.lambda_event_source_mappings:  # moto's own Lambda polling (the runtime polls itself): moto's path
            return add_message(self, message)
        # moto's own check would deduplicate again, against the queued messages only and ignoring the scope
        with self._messages_lock:
            self._messages.append(message)
            self._messages_lock.notify_all()
        return None

    return wrapper


def make_sqs_fifo_like_aws() -> None:
    """moto 5.x gives a FIFO message a random 20-digit SequenceNumber and deduplicates a send only against the
    messages still in the queue. SQS's sequence numbers increase (within a message group, and here across the
    process), and a deduplication id sent once is not delivered again for five minutes, deleted or not (per message
    group with `DeduplicationScope: messageGroup`). Code that orders by the sequence number (held webhook events,
    webhooks/holds.py) or resends under a new id on purpose depends on both. Idempotent; affects moto servers
    running in this process."""
    global _SQS_PATCHED
    with _SQS_LOCK:
        if _SQS_PATCHED:
            return
        from moto.sqs.models import Queue

        Queue.add_message = _fifo_send_like_sqs(Queue.add_message)  # type: ignore[method-assign]
        _SQS_PATCHED = True
