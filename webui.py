"""Starts the server: the Gradio UI on 127.0.0.1:7860 (with the A1111 API when --api), or the API
alone on 127.0.0.1:7861 with --nowebui. Normally started through launch.py / webui.sh."""
from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UI_PORT = 7860
API_ONLY_PORT = 7861

log = logging.getLogger("webui")


def server_address(args: argparse.Namespace) -> tuple[str, int]:
    """(host, port): --server-name, else 0.0.0.0 with --listen, else 127.0.0.1 (also for
    --nowebui, where A1111 1.6+ leaves it to uvicorn)."""
    host = args.server_name or ("0.0.0.0" if args.listen else "127.0.0.1")
    port = args.port or (API_ONLY_PORT if args.nowebui else UI_PORT)
    return host, port


def configure_logging(level: str | None) -> None:
    logging.basicConfig(level=getattr(logging, level or "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def select_startup_checkpoint(ctx) -> None:
    """--ckpt FILE becomes the selected checkpoint (A1111 does the same at start-up)."""
    if not getattr(ctx.args, "ckpt", None):
        return
    wanted = Path(ctx.args.ckpt).resolve()
    for info in ctx.checkpoints.list():
        if Path(info.filename).resolve() == wanted:
            ctx.options.set("sd_model_checkpoint", info.title)
            return
    log.warning("--ckpt %s is not a checkpoint file that could be listed", ctx.args.ckpt)


def preload_checkpoint(ctx) -> None:
    """Queue the loading of the selected checkpoint so the first request does not pay for it.
    A missing or broken checkpoint is logged (with the folder to use); the server still starts."""
    def load(progress) -> None:
        ctx.model_manager.get(ctx.options.get("sd_model_checkpoint") or None)

    job = ctx.jobs.submit("load_model", load)

    def report(_: object = None) -> None:
        try:
            job.wait()
        except Exception as error:  # noqa: BLE001 - reported, the server keeps running
            log.warning("Model not loaded at start-up: %s", error)

    threading.Thread(target=report, name="startup-model-report", daemon=True).start()


def port_in_use(host: str, port: int) -> bool:
    """Whether another process listens on (host, port); checked before the slow start-up so a
    second server says so at once (uvicorn would only fail after loading everything)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def build_app(ctx):
    if ctx.args.nowebui:
        from modules.api.app import create_api_app
        return create_api_app(ctx)
    from modules.ui.app import create_ui_app
    return create_ui_app(ctx)


def run_worker_process(args: argparse.Namespace) -> int:
    """`--worker --queue redis://…`: no HTTP server; generate what the queue hands out."""
    from modules.api.scale_out import run_worker
    from modules.app.context import build_app_context
    ctx = build_app_context(args, ROOT)
    try:
        select_startup_checkpoint(ctx)
        if not args.skip_load_model_at_start:
            preload_checkpoint(ctx)
        return run_worker(ctx)
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    from modules.app.cmd_args import parse_args
    args, unknown = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level)
    if unknown:
        log.warning("Ignoring unknown command-line arguments (flags of extensions that are not "
                    "installed?): %s", " ".join(unknown))

    if (args.worker or args.local_worker) and not args.queue:
        log.error("--worker and --local-worker take jobs from a queue: "
                  "add --queue redis://HOST:PORT/DB")
        return 2
    if args.worker:
        return run_worker_process(args)

    host, port = server_address(args)
    if port_in_use(host, port):
        log.error("Port %d on %s is already in use (is the server already running?). Stop the "
                  "other process or choose another port with --port.", port, host)
        return 1

    import uvicorn

    from modules.app.context import build_app_context
    ctx = build_app_context(args, ROOT)
    try:
        select_startup_checkpoint(ctx)
        generates_here = not args.queue or args.local_worker
        if generates_here and not args.skip_load_model_at_start:
            preload_checkpoint(ctx)
        if args.queue:
            from modules.api.scale_out import attach_queue, start_worker
            from modules.jobs.service import QueueUnavailableError
            try:
                attach_queue(ctx)
            except QueueUnavailableError as error:
                log.error("%s", error)
                return 1
            if args.local_worker:
                start_worker(ctx)
        app = build_app(ctx)
        log.info("%s on http://%s:%d%s", "API" if args.nowebui else "Web UI", host, port,
                 " (docs at /docs)" if args.nowebui or args.api else "")
        uvicorn.run(app, host=host, port=port, timeout_keep_alive=args.timeout_keep_alive,
                    root_path=f"/{args.subpath.strip('/')}" if args.subpath else "",
                    ssl_keyfile=args.tls_keyfile if args.tls_certfile else None,
                    ssl_certfile=args.tls_certfile if args.tls_keyfile else None,
                    log_level=(args.log_level or "info").lower())
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
