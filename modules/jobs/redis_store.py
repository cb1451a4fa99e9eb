"""The Redis layout shared by the front (`redis_service`) and the workers (`redis_worker`).

Keys (prefix `sd:` by default):
* `jobs:<checkpoint>` streams, one per checkpoint a job asks for (`jobs:*` for "any"), all with
  the consumer group `workers`; an entry is `{id, spec}`. The set `streams` names them.
* `job:<id>` hash: kind, state, seq, worker, deliveries, error, error_status, error_body,
  progress (JSON), preview (data URL), textinfo, control ("cancel" / "interrupt"), skips.
* `job:<id>:events` stream (capped): the job's event log; `job:<id>:result` the JSON result,
  written only if absent so a redelivered job cannot have two results.
* `queued` / `running` / `index` sorted sets: waiting ids by submission, running ids by start,
  every known id by submission.
* `worker:<name>` heartbeat (JSON: checkpoint, job), expiring after the heartbeat timeout;
  `workers` the set of names; `deadletter` a list of jobs given up after too many deliveries.
State changes that must not interleave (start, cancel, finish) are Lua scripts, so they are
atomic on the server.
"""
from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

GROUP = "workers"
ANY_CHECKPOINT = "*"
EVENTS_MAXLEN = 1000
_STREAM_ID = re.compile(r"^\d+-\d+$")


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = "sd:"

    def stream(self, checkpoint: str | None) -> str:
        return f"{self.prefix}jobs:{checkpoint or ANY_CHECKPOINT}"

    @property
    def streams(self) -> str:
        return f"{self.prefix}streams"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:result"

    @property
    def queued(self) -> str:
        return f"{self.prefix}queued"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

    @property
    def index(self) -> str:
        return f"{self.prefix}index"

    @property
    def seq(self) -> str:
        return f"{self.prefix}seq"

    def worker(self, name: str) -> str:
        return f"{self.prefix}worker:{name}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def stream_id_or_start(event_id: str | None) -> str:
    """A client's Last-Event-ID as a stream position; anything else reads from the start."""
    return event_id if event_id and _STREAM_ID.match(event_id) else "0-0"


def redacted_url(url: str) -> str:
    """The queue's URL for messages and logs: never its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urllib.parse.urlunsplit((parts.scheme, user + host, parts.path, parts.query, ""))


# -- Lua scripts ----------------------------------------------------------------------------------
# Each returns a short status word. ARGV numbers are documented per script.

#: KEYS job, queued, events. ARGV id, now, final event data, retention s, events maxlen
CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'event', 'cancelled', 'data', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'control', 'cancel')
  return 'cancelling'
end
return 'finished'
"""

#: KEYS job, queued, events, result, running. ARGV id, worker, now, events maxlen, state data
START = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', 0} end
if state ~= 'queued' and state ~= 'running' then return {state, 0} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'done', 0} end
if redis.call('HGET', KEYS[1], 'control') == 'cancel' then return {'cancel', 0} end
local deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[2], 'started', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'event', 'state', 'data', ARGV[5])
return {'running', deliveries}
"""

#: KEYS job, events, result, running. ARGV id, result JSON, now, retention s, events maxlen,
#: final event data. Stores the result only when none is stored yet.
FINISH = """
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', ARGV[4]) then return 'duplicate' end
redis.call('HSET', KEYS[1], 'state', 'done', 'finished', ARGV[3])
redis.call('HDEL', KEYS[1], 'progress', 'control')
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'event', 'done', 'data', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 'done'
"""

#: KEYS job, events, running, queued. ARGV id, state (failed / cancelled), now, retention s,
#: events maxlen, final event data, error, error status, error body JSON
END = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'done' or state == 'failed' or state == 'cancelled' then return state end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished', ARGV[3])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'error', ARGV[7], 'error_status', ARGV[8], 'error_body', ARGV[9])
end
redis.call('HDEL', KEYS[1], 'progress', 'control')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'event', ARGV[2], 'data', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return ARGV[2]
"""
