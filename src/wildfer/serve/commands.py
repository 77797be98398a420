"""``wildfer serve``: the HTTP API and web page on uvicorn."""

from __future__ import annotations

import inspect
import json
import os
from typing import List, Optional

import typer

from ..models import PIPELINE_MODEL


def register(app: typer.Typer, panel: str) -> None:
    app.command("serve", rich_help_panel=panel)(serve)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. The default answers this machine only; "
                             "use 0.0.0.0 to serve the network."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port."),
    model: str = typer.Option(PIPELINE_MODEL, "--model", "-m", help="Built-in model name (wild_ensemble: the pipeline's, for web faces), .pt checkpoint, "
                              ".safetensors file or run folder."),
    detector: str = typer.Option("yunet", "--detector", help="Face detector."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="Server processes, each with its own copy "
                                "of the model. One process with --threads per core is enough on a small CPU; "
                                "more processes cost memory."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, max=256, help="Inference threads per "
                                          "process: photos processed at once, sharing one model "
                                          "(default: cores / workers)."),
    backend: str = typer.Option("auto", "--backend", help="Classifier runtime: auto (onnxruntime when the model "
                                "exports, else torch), onnx, torch or int8 (the model's int8 graph on the CPU, "
                                "several times faster). Saliency maps always use torch."),
    device: str = typer.Option("auto", "--device", help="Where the classifier runs: auto (a CUDA GPU when there "
                               "is one, else the CPU), cpu, cuda or cuda:N. With --backend auto a GPU only "
                               "torch can use wins over onnxruntime on the CPU."),
    cors: Optional[List[str]] = typer.Option(None, "--cors", help="Allow browser calls from this origin "
                                             "(repeatable or comma-separated, e.g. --cors http://localhost:3000). "
                                             "Off by default."),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", min=0.01, help="Largest accepted photo (MB); 413 beyond."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds per request; 504 beyond."),
    unsure_below: float = typer.Option(0.0, "--unsure-below", help="Flag faces whose likeliest label's probability is below this (0 to 1) as unsure."),
    max_megapixels: float = typer.Option(40.0, "--max-megapixels", min=0.01, help="Largest decoded image (MP); 413 beyond."),
    max_queue: int = typer.Option(64, "--max-queue", min=1, help="Requests waiting for the model before 503."),
    max_explain: int = typer.Option(2, "--max-explain", min=1, help="Saliency requests in progress at once "
                                    "(503 with Retry-After beyond)."),
    allowed_host: Optional[List[str]] = typer.Option(None, "--allowed-host", help="Also answer requests whose "
                                                     "Host header is this name (repeatable or comma-separated), "
                                                     "e.g. the machine's DNS name when serving the network. "
                                                     "Besides it: localhost, 127.0.0.1, ::1 and --host (0.0.0.0: "
                                                     "any IPv4 address); other hosts get 400 (DNS rebinding)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level (debug, info, warning, error)."),
):
    """Serve the model over HTTP: POST /v1/predict, /v1/explain; GET /v1/models, /healthz; the page at /."""
    from ..wild.recognizer import checked_unsure_below
    from .runner import check_port

    checked_unsure_below(unsure_below, "--unsure-below")
    check_port(host, port)  # a busy port is a one-line error before the model loads
    cors = _split(cors)
    hosts = [host] + _split(allowed_host)
    threads, compute = _thread_counts(workers, threads)
    settings = dict(model=model, detector=detector, max_upload_mb=max_upload_mb, timeout=timeout,
                    cors=cors, max_pixels=int(max_megapixels * 1e6), max_queue=max_queue,
                    torch_threads=compute, threads=threads, backend=backend, device=device,
                    max_explain=max_explain, unsure_below=unsure_below,
                    allowed_hosts=hosts)
    # Load once here: a wrong model, detector or backend is a one-line error before any socket opens.
    from .app import load_recognizer

    rec = load_recognizer(model, detector, backend, compute_threads=compute, device=device, unsure_below=unsure_below)
    _announce(rec, model, host, port, workers, threads, cors, unsure_below)
    common = dict(log_level=log_level, limit_concurrency=max_queue + 64, server_header=False)
    if workers == 1:
        _serve_in_process(rec, settings, host, port, common)
    else:
        del rec
        _serve_workers(settings, host, port, workers, common)


def _split(values: Optional[List[str]]) -> list[str]:
    """Repeated and comma-separated option values, one list."""
    return [v.strip() for value in (values or []) for v in value.split(",") if v.strip()]


def _thread_counts(workers: int, threads: int | None) -> tuple[int, int]:
    """Inference threads per process (default: cores / workers) and the torch / onnxruntime
    threads per inference thread (so that the processes' threads share the cores)."""
    cores = os.cpu_count() or 1
    if threads is None:
        threads = max(1, cores // workers)
    return threads, max(1, cores // (workers * threads))


def _announce(rec, model: str, host: str, port: int, workers: int, threads: int, cors: list[str],
              unsure_below: float = 0.0) -> None:
    from rich.console import Console

    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    Console(stderr=True).print(
        f"wildfer: model [bold]{model}[/] ({getattr(rec.classifier, 'arch', '')} on {rec.classifier.backend_label}, "
        f"{rec.classifier.device}), detector {rec.detector.name}, {workers} process(es) x {threads} thread(s); "
        f"page {where}/ , API reference {where}/docs" + (f"; CORS for {', '.join(cors)}" if cors else "")
        + (f"; faces under probability {unsure_below:g} flagged unsure" if unsure_below else ""),
        highlight=False)


def _serve_in_process(rec, settings: dict, host: str, port: int, common: dict) -> None:
    """One process: the app around the recognizer already loaded."""
    import uvicorn

    from .app import create_app
    from .runner import server_config

    app_ = create_app(rec, **{k: v for k, v in settings.items() if k not in ("model", "detector", "backend", "device")})
    server = uvicorn.Server(server_config(app_, host, port, **common))
    server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn has logged why


def _serve_workers(settings: dict, host: str, port: int, workers: int, common: dict) -> None:
    """``workers`` uvicorn processes, each building the app (and loading the model) from ``settings``."""
    import uvicorn

    from .app import CONFIG_ENV
    from .runner import KEEP_ALIVE_S, MAX_HEAD_BYTES, GuardedH11Protocol

    os.environ[CONFIG_ENV] = json.dumps(settings)
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # uvicorn kills a worker that does not answer its ping within 5 s; loading torch
        # and the model on a busy machine can take longer than that
        common = {**common, "timeout_worker_healthcheck": 120}
    # the workers' protocol: its header deadline is the class's default (HEADER_TIMEOUT_S)
    uvicorn.run("wildfer.serve.app:app_from_env", factory=True, workers=workers, host=host, port=port,
                http=GuardedH11Protocol, timeout_keep_alive=KEEP_ALIVE_S,
                h11_max_incomplete_event_size=MAX_HEAD_BYTES, **common)
