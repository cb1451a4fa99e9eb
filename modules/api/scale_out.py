"""Several machines: the Redis queue on a front (`--queue`), generation workers (`--worker`, or
`--local-worker` beside a front). Workers run the same handlers as the embedded queue, on this
process's JobQueue, so they share the device with anything else the process runs."""
from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from modules.api.job_handlers import generation_handlers, preview_encoder
from modules.jobs.redis_service import RedisJobService
from modules.jobs.redis_store import redacted_url
from modules.jobs.redis_worker import RedisWorker

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)


def attach_queue(ctx: "AppContext") -> None:
    """With --queue, the API's jobs go to Redis (checked at start: a typo fails early)."""
    url = ctx.args.queue
    service = RedisJobService(url, max_waiting=lambda: int(ctx.limits.value("limit_queue_size")))
    service.current_id()   # raises QueueUnavailableError with the reason when unreachable
    ctx.job_service = service
    log.info("Jobs are queued in %s for the workers", redacted_url(url))


def start_worker(ctx: "AppContext") -> RedisWorker:
    args = ctx.args

    def loaded_checkpoint() -> str | None:
        info = ctx.model_manager.current_checkpoint()
        return info.name if info is not None else None

    worker = RedisWorker(
        args.queue, generation_handlers(ctx), name=args.worker_name,
        executor=lambda kind, job_id, fn: ctx.jobs.run(kind, fn, task_id=job_id),
        loaded_checkpoint=loaded_checkpoint, heartbeat_timeout=args.worker_heartbeat,
        max_deliveries=args.worker_max_deliveries, encode_preview=preview_encoder(ctx))
    log.info("Worker %s takes jobs from %s", worker.name, redacted_url(args.queue))
    return worker.start()


def run_worker(ctx: "AppContext") -> int:
    """A worker process: takes jobs until SIGINT / SIGTERM, then finishes the running one."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    worker = start_worker(ctx)
    stop.wait()
    log.info("Worker %s stopping", worker.name)
    worker.stop()
    return 0
