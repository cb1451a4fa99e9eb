"""A generation worker for the Redis queue: takes one job at a time from the streams, runs its
handler on this process's device, reports progress and stores the result.

Delivery is at least once: an entry is acknowledged only after its result (or failure) is stored,
and the result is stored only if none is (so a job run twice still has one result). A worker that
stops heart-beating has its unacknowledged jobs claimed by another worker; the claim is tied to
the missing heartbeat, so a long job on a live worker is never taken from it. A job delivered more
than `max_deliveries` times (its workers keep dying, e.g. killed for memory) goes to the dead
letter list with its error.

Model affinity: a worker reads the stream of the checkpoint it has loaded and the "any" stream
first; when those are empty it takes a job for another checkpoint when no live worker has that
one loaded, or when it has waited longer than `affinity_wait_seconds`.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Callable, Mapping

import redis

from modules.jobs.progress import JobProgress
from modules.jobs.redis_service import connect, ensure_group
from modules.jobs.redis_store import (END, EVENTS_MAXLEN, FINISH, GROUP, START, RedisKeys, dumps,
                                      redacted_url)
from modules.jobs.service import (CANCELLED, DONE, FAILED, RUNNING, JobError, JobHandler, JobSpec,
                                  PreviewEncoder, ProgressPump, error_message,
                                  final_event_data)

log = logging.getLogger(__name__)

#: runs one job's function on the device: (kind, job id, fn) -> result; the default calls fn
Executor = Callable[[str, str, Callable[[JobProgress], dict[str, Any]]], dict[str, Any]]


def run_here(kind: str, job_id: str, fn: Callable[[JobProgress], dict[str, Any]]
             ) -> dict[str, Any]:
    return fn(JobProgress(job=kind))


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisWorker:
    def __init__(self, url: str, handlers: Mapping[str, JobHandler], *,
                 name: str | None = None, executor: Executor = run_here,
                 loaded_checkpoint: Callable[[], str | None] = lambda: None,
                 heartbeat_timeout: float = 5.0, max_deliveries: int = 3,
                 retention_seconds: int = 3600, affinity_wait_seconds: float = 10.0,
                 encode_preview: PreviewEncoder | None = None,
                 keys: RedisKeys = RedisKeys()) -> None:
        self.url = url
        self.name = name or worker_name()
        self.keys = keys
        self._handlers = handlers
        self._executor = executor
        self._loaded_checkpoint = loaded_checkpoint
        self.heartbeat_timeout = heartbeat_timeout
        self.max_deliveries = max_deliveries
        self.retention_seconds = int(retention_seconds)
        self.affinity_wait_seconds = affinity_wait_seconds
        self._encode_preview = encode_preview
        self._client = connect(url)
        self._start = self._client.register_script(START)
        self._finish = self._client.register_script(FINISH)
        self._end = self._client.register_script(END)
        self._stop = threading.Event()
        self._current_job: str | None = None
        self._threads: list[threading.Thread] = []
        self._groups_ready: set[str] = set()
        self._last_reclaim = 0.0
        self._unreachable_logged = False

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "RedisWorker":
        for target, label in ((self._heartbeat_loop, "heartbeat"), (self.run, "jobs")):
            thread = threading.Thread(target=target, name=f"redis-worker-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        try:
            self._client.delete(self.keys.worker(self.name))
            self._client.srem(self.keys.workers, self.name)
        except redis.exceptions.RedisError:
            pass
        self._client.close()

    def run(self) -> None:
        """Take and run jobs until stopped; Redis outages are waited out."""
        self.beat()
        while not self._stop.is_set():
            try:
                self.poll_once(block_seconds=1.0)
                self._unreachable_logged = False
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
                if not self._unreachable_logged:
                    log.warning("worker %s: the queue at %s cannot be reached (%s); retrying",
                                self.name, redacted_url(self.url), error)
                    self._unreachable_logged = True
                self._stop.wait(1.0)

    # -- heartbeats ------------------------------------------------------------------------------
    def beat(self) -> None:
        beat = {"name": self.name, "checkpoint": self._loaded_checkpoint(),
                "job": self._current_job, "time": time.time()}
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self.keys.worker(self.name), dumps(beat),
                 px=int(self.heartbeat_timeout * 1000))
        pipe.sadd(self.keys.workers, self.name)
        pipe.execute()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_timeout / 4):
            try:
                self.beat()
            except redis.exceptions.RedisError:
                log.debug("worker %s: heartbeat failed", self.name, exc_info=True)

    def live_workers(self) -> dict[str, dict[str, Any]]:
        names = sorted(self._client.smembers(self.keys.workers))
        beats = self._client.mget([self.keys.worker(name) for name in names]) if names else []
        live, gone = {}, []
        for name, beat in zip(names, beats):
            if beat:
                live[name] = json.loads(beat)
            else:
                gone.append(name)
        if gone:
            self._client.srem(self.keys.workers, *gone)
        return live

    # -- taking jobs -----------------------------------------------------------------------------
    def poll_once(self, block_seconds: float = 0.0) -> bool:
        """Claim a dead worker's job or read a new one, and run it; True when a job ran."""
        if time.monotonic() - self._last_reclaim >= self.heartbeat_timeout / 2:
            self._last_reclaim = time.monotonic()
            if self.reclaim():
                return True
        entry = self._read(self._preferred_streams(), block_seconds)
        if entry is None:
            entry = self._read_other_checkpoint()
        if entry is None:
            return False
        self._process(*entry)
        return True

    def _preferred_streams(self) -> list[str]:
        loaded = self._loaded_checkpoint()
        streams = [self.keys.stream(None)]
        if loaded:
            streams.insert(0, self.keys.stream(loaded))
        return streams

    def _read(self, streams: list[str], block_seconds: float) -> tuple[str, str, dict] | None:
        for stream in streams:
            if stream not in self._groups_ready:
                ensure_group(self._client, stream)
                self._groups_ready.add(stream)
        block = int(block_seconds * 1000) if block_seconds > 0 else None
        replies = self._client.xreadgroup(GROUP, self.name, {stream: ">" for stream in streams},
                                          count=1, block=block)
        for stream, entries in replies or []:
            for entry_id, fields in entries:
                return stream, entry_id, fields
        return None

    def _read_other_checkpoint(self) -> tuple[str, str, dict] | None:
        """A job for a checkpoint this worker has not loaded: taken when no live worker has it
        loaded, or when its oldest job has waited `affinity_wait_seconds`."""
        mine = set(self._preferred_streams())
        others = [stream for stream in sorted(self._client.smembers(self.keys.streams))
                  if stream not in mine]
        if not others:
            return None
        loaded_elsewhere = {self.keys.stream(beat.get("checkpoint"))
                            for name, beat in self.live_workers().items()
                            if name != self.name and beat.get("checkpoint")}
        for stream in others:
            waiting = self._oldest_waiting_seconds(stream)
            if waiting is None:
                continue
            if stream not in loaded_elsewhere or waiting >= self.affinity_wait_seconds:
                entry = self._read([stream], 0)
                if entry is not None:
                    return entry
        return None

    def _oldest_waiting_seconds(self, stream: str) -> float | None:
        """How long the oldest undelivered entry of `stream` has waited; None when none waits."""
        groups = self._client.xinfo_groups(stream)
        group = next((g for g in groups if g["name"] == GROUP), None)
        if group is None:
            return None
        last = group.get("last-delivered-id") or "0-0"
        entries = self._client.xrange(stream, min=f"({last}", count=1)
        if not entries:
            return None
        return max(0.0, time.time() - int(entries[0][0].split("-")[0]) / 1000)

    def reclaim(self) -> bool:
        """Take over one job pending on a worker whose heartbeat has stopped; True if one ran."""
        timeout_ms = int(self.heartbeat_timeout * 1000)
        for stream in sorted(self._client.smembers(self.keys.streams)):
            try:
                pending = self._client.xpending_range(stream, GROUP, min="-", max="+", count=50)
            except redis.exceptions.ResponseError:
                continue  # no group yet
            for item in pending:
                owner = item["consumer"]
                if owner == self.name or item["time_since_delivered"] < timeout_ms:
                    continue
                if self._client.exists(self.keys.worker(owner)):
                    continue  # alive: a long job is not a dead worker
                # min_idle_time makes a second claimer's XCLAIM a no-op
                claimed = self._client.xclaim(stream, GROUP, self.name, timeout_ms,
                                              [item["message_id"]])
                for entry_id, fields in claimed:
                    if fields:
                        log.warning("worker %s: took over %s from %s (no heartbeat)",
                                    self.name, fields.get("id"), owner)
                        self._process(stream, entry_id, fields)
                        return True
        return False

    # -- running one -----------------------------------------------------------------------------
    def _acknowledge(self, stream: str, entry_id: str) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.execute()

    def _process(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        job_id = fields.get("id", "")
        keys = self.keys
        outcome, deliveries = self._start(
            keys=[keys.job(job_id), keys.queued, keys.events(job_id), keys.result(job_id),
                  keys.running],
            args=[job_id, self.name, time.time(), EVENTS_MAXLEN,
                  dumps({"state": RUNNING, "position": 0, "worker": self.name})])
        if outcome == "cancel":
            self._end_job(job_id, CANCELLED)
        if outcome != RUNNING:
            self._acknowledge(stream, entry_id)  # cancelled, finished or expired meanwhile
            return
        if int(deliveries) > self.max_deliveries:
            self._dead_letter(stream, entry_id, job_id, fields, int(deliveries))
            return
        try:
            spec = JobSpec.from_json(fields["spec"])
        except (KeyError, ValueError) as error:
            self._end_job(job_id, FAILED, JobError(f"Unreadable job: {error}", 400))
            self._acknowledge(stream, entry_id)
            return
        self._current_job = job_id
        try:
            self.beat()
            self._run_job(job_id, spec)
        finally:
            self._current_job = None
        self._acknowledge(stream, entry_id)

    def _run_job(self, job_id: str, spec: JobSpec) -> None:
        handler = self._handlers.get(spec.kind)
        if handler is None:
            self._end_job(job_id, FAILED, JobError(f"No handler for jobs of kind {spec.kind!r}"))
            return
        key = self.keys.job(job_id)
        seen_skips = [0]

        def apply_requests(progress: JobProgress) -> None:
            control, skips = self._client.hmget(key, "control", "skips")
            if control in ("cancel", "interrupt") and not progress.interrupted:
                progress.interrupt()
            if skips and int(skips) > seen_skips[0]:
                seen_skips[0] = int(skips)
                progress.skip()

        def emit(event: str, data: dict[str, Any]) -> None:
            record = {"progress": dumps({k: v for k, v in data.items() if k != "preview"})}
            if data.get("preview"):
                record["preview"] = data["preview"]
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(key, mapping=record)
            pipe.xadd(self.keys.events(job_id), {"event": event, "data": dumps(data)},
                      maxlen=EVENTS_MAXLEN, approximate=True)
            pipe.execute()

        def fn(progress: JobProgress) -> dict[str, Any]:
            apply_requests(progress)  # an interrupt sent while it waited belongs to it
            # read at every sampler step, so a request stops the job at the next step; the pump
            # reads them too, for the parts of a job that are not sampling steps
            progress.set_request_check(lambda: apply_requests(progress))
            try:
                with ProgressPump(progress, emit, encode_preview=self._encode_preview,
                                  on_tick=lambda: apply_requests(progress)):
                    return handler(spec.payload, progress)
            finally:
                progress.set_request_check(None)

        try:
            result = self._executor(spec.kind, job_id, fn)
        except Exception as error:  # noqa: BLE001 - every failure is stored for the client
            failure = error if isinstance(error, JobError) else JobError(
                error_message(error) or "The job failed", int(getattr(error, "status_code", 500)))
            log.info("worker %s: %s failed: %s", self.name, job_id, failure)
            self._store(lambda: self._end_job(job_id, FAILED, failure))
            return
        if self._client.hget(key, "control") == "cancel":
            self._store(lambda: self._end_job(job_id, CANCELLED))
            return
        self._store(lambda: self._finish_job(job_id, result))

    def _store(self, write: Callable[[], Any]) -> None:
        """Write an outcome, waiting out a Redis outage: the job is acknowledged only after."""
        while True:
            try:
                write()
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                if self._stop.wait(1.0):
                    raise

    def _finish_job(self, job_id: str, result: dict[str, Any]) -> None:
        keys = self.keys
        self._finish(keys=[keys.job(job_id), keys.events(job_id), keys.result(job_id),
                           keys.running],
                     args=[job_id, dumps(result), time.time(), self.retention_seconds,
                           EVENTS_MAXLEN, dumps(final_event_data(job_id, DONE))])

    def _end_job(self, job_id: str, state: str, error: JobError | None = None) -> None:
        keys = self.keys
        data = final_event_data(job_id, state, str(error) if error is not None else None)
        self._end(keys=[keys.job(job_id), keys.events(job_id), keys.running, keys.queued],
                  args=[job_id, state, time.time(), self.retention_seconds, EVENTS_MAXLEN,
                        dumps(data), str(error) if error is not None else "",
                        error.status if error is not None else 0,
                        dumps(error.body) if error is not None else ""])

    def _dead_letter(self, stream: str, entry_id: str, job_id: str, fields: dict[str, str],
                     deliveries: int) -> None:
        error = JobError(f"Given up after {deliveries - 1} deliveries: each worker that ran this "
                         f"job stopped before finishing it (out of memory?)", 500)
        log.error("worker %s: %s goes to the dead-letter list: %s", self.name, job_id, error)
        self._end_job(job_id, FAILED, error)
        self._client.rpush(self.keys.deadletter, dumps({
            "id": job_id, "spec": fields.get("spec"), "error": str(error),
            "deliveries": deliveries - 1, "time": time.time()}))
        self._acknowledge(stream, entry_id)
