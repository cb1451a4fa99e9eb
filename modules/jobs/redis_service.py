"""The job service over Redis Streams: the API front enqueues, workers elsewhere run.

Nothing about a job lives only in the front's memory: its record, events and result are in Redis
(`redis_store` has the layout), so a restarted front serves the same jobs. When Redis cannot be
reached every call raises QueueUnavailableError (HTTP 503); the next call tries again.
"""
from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Callable, Iterator

import redis

from modules.jobs.queue import QueueFullError, create_task_id
from modules.jobs.redis_store import (CANCEL, EVENTS_MAXLEN, GROUP, RedisKeys, dumps,
                                      redacted_url, stream_id_or_start)
from modules.jobs.service import (CANCELLED, DONE, FAILED, QUEUED, RUNNING, DuplicateJobError,
                                  JobEvent, JobSpec, JobView, QueueUnavailableError,
                                  final_event_data)

CONNECT_TIMEOUT_SECONDS = 2.0
WAIT_POLL_SECONDS = 1.0


def connect(url: str) -> redis.Redis:
    """A client with string replies; blocking reads set their own time limits."""
    return redis.Redis.from_url(url, decode_responses=True,
                                socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                health_check_interval=30)


@contextlib.contextmanager
def reachable(url: str) -> Iterator[None]:
    """Connection failures as QueueUnavailableError, with the URL (never its password)."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        raise QueueUnavailableError(
            f"The job queue at {redacted_url(url)} cannot be reached ({error}); jobs can be "
            f"queued again when it is back") from error


def ensure_group(client: redis.Redis, stream: str) -> None:
    """The stream and its consumer group; from id 0, so nothing queued before is missed."""
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def view_from_record(job_id: str, record: dict[str, str], rank: int | None,
                     result: str | None) -> JobView:
    state = record.get("state", QUEUED)
    view = JobView(id=job_id, kind=record.get("kind", ""), state=state,
                   worker=record.get("worker") or None, textinfo=record.get("textinfo") or None,
                   preview=record.get("preview") or None,
                   interrupted=record.get("control") in ("interrupt", "cancel"))
    if state == QUEUED:
        view.position = (rank + 1) if rank is not None else None
    elif state == RUNNING:
        view.position = 0
        view.progress = json.loads(record["progress"]) if record.get("progress") else None
    elif state == DONE and result is not None:
        view.result = json.loads(result)
    elif state == FAILED:
        view.error = record.get("error") or "The job failed"
        view.error_status = int(record.get("error_status") or 500)
        view.error_body = json.loads(record["error_body"]) if record.get("error_body") else None
    return view


class RedisJobService:
    """`JobService` whose jobs wait in Redis streams for workers (`redis_worker.RedisWorker`)."""

    def __init__(self, url: str, *, max_waiting: Callable[[], int] = lambda: 0,
                 retention_seconds: int = 3600, keys: RedisKeys = RedisKeys()) -> None:
        self.url = url
        self.keys = keys
        self.max_waiting = max_waiting
        self.retention_seconds = int(retention_seconds)
        self._client = connect(url)
        self._cancel = self._client.register_script(CANCEL)
        self._known_streams: set[str] = set()

    def submit(self, spec: JobSpec, *, task_id: str | None = None) -> str:
        job_id = task_id or create_task_id(spec.kind)
        keys = self.keys
        stream = keys.stream(spec.checkpoint)
        with reachable(self.url):
            if stream not in self._known_streams:
                ensure_group(self._client, stream)
                self._client.sadd(keys.streams, stream)
                self._known_streams.add(stream)
            limit = int(self.max_waiting() or 0)
            if limit > 0:
                waiting = self._client.zcard(keys.queued)
                if waiting >= limit:
                    raise QueueFullError(waiting, limit, retry_after=5)
            if not self._client.hsetnx(keys.job(job_id), "state", QUEUED):
                raise DuplicateJobError(f"Job {job_id} already exists")
            seq = self._client.incr(keys.seq)
            # the record, its place in line and its stream entry land together or not at all
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(keys.job(job_id), mapping={
                "kind": spec.kind, "seq": seq, "submitted": time.time(),
                "checkpoint": spec.checkpoint or "", "deliveries": 0})
            pipe.zadd(keys.queued, {job_id: seq})
            pipe.zadd(keys.index, {job_id: seq})
            pipe.xadd(keys.events(job_id), {"event": "state",
                                            "data": dumps({"state": QUEUED})},
                      maxlen=EVENTS_MAXLEN, approximate=True)
            pipe.xadd(stream, {"id": job_id, "spec": spec.to_json()})
            pipe.execute()
        return job_id

    def view(self, job_id: str) -> JobView | None:
        keys = self.keys
        with reachable(self.url):
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(keys.job(job_id))
            pipe.zrank(keys.queued, job_id)
            pipe.get(keys.result(job_id))
            record, rank, result = pipe.execute()
        if not record or "kind" not in record:
            return None
        return view_from_record(job_id, record, rank, result)

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        deadline = None if timeout is None else time.monotonic() + timeout
        after: str | None = None
        while True:
            view = self.view(job_id)
            if view is None:
                raise KeyError(job_id)
            if view.finished:
                return view
            remaining = WAIT_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{job_id} did not finish within {timeout} s")
            # wake on the job's next event rather than polling
            events = self.events(job_id, after, timeout=min(remaining, WAIT_POLL_SECONDS))
            if events:
                after = events[-1].id

    def cancel(self, job_id: str) -> bool:
        keys = self.keys
        data = dumps(final_event_data(job_id, CANCELLED))
        with reachable(self.url):
            outcome = self._cancel(keys=[keys.job(job_id), keys.queued, keys.events(job_id)],
                                   args=[job_id, time.time(), data, self.retention_seconds,
                                         EVENTS_MAXLEN])
        return outcome in ("cancelled", "cancelling")

    def interrupt(self, job_id: str) -> bool:
        return self._request(job_id, lambda pipe, key: pipe.hset(key, "control", "interrupt"))

    def skip(self, job_id: str) -> bool:
        return self._request(job_id, lambda pipe, key: pipe.hincrby(key, "skips", 1))

    def _request(self, job_id: str, write: Callable[[Any, str], Any]) -> bool:
        key = self.keys.job(job_id)
        with reachable(self.url):
            state = self._client.hget(key, "state")
            if state not in (QUEUED, RUNNING):
                return False
            pipe = self._client.pipeline(transaction=True)
            write(pipe, key)
            pipe.execute()
        return True

    def current_id(self) -> str | None:
        with reachable(self.url):
            latest = self._client.zrevrange(self.keys.running, 0, 0)
        return latest[0] if latest else None

    def job_ids(self) -> list[str]:
        keys = self.keys
        with reachable(self.url):
            ids = self._client.zrange(keys.index, 0, -1)
            if not ids:
                return []
            pipe = self._client.pipeline(transaction=False)
            for job_id in ids:
                pipe.exists(keys.job(job_id))
            present = pipe.execute()
            expired = [job_id for job_id, exists in zip(ids, present) if not exists]
            if expired:
                self._client.zrem(keys.index, *expired)
        return [job_id for job_id, exists in zip(ids, present) if exists]

    def events(self, job_id: str, after: str | None = None,
               timeout: float = 0.0) -> list[JobEvent]:
        stream = self.keys.events(job_id)
        block = int(timeout * 1000) if timeout > 0 else None
        with reachable(self.url):
            replies = self._client.xread({stream: stream_id_or_start(after)}, block=block)
        events = []
        for _, entries in replies or []:
            for entry_id, fields in entries:
                events.append(JobEvent(entry_id, fields.get("event", ""),
                                       json.loads(fields.get("data") or "{}")))
        return events

    def dead_letters(self) -> list[dict[str, Any]]:
        with reachable(self.url):
            return [json.loads(item) for item in self._client.lrange(self.keys.deadletter, 0, -1)]

    def close(self) -> None:
        self._client.close()
