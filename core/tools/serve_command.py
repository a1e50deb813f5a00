"""``ragprune serve``: the served pruner on Ray Serve (see :mod:`ragprune.integrations.ray.serve`)."""

from __future__ import annotations

import argparse
import sys

from ..cli import Command, UsageError, add_model_argument, check_counter, check_model_path, int_at_least, number_in

__all__ = ["SERVE_COMMAND"]


def _configure(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--counter", default="cl100k_base",
                        help="token counter of budgets and counts, for a pruner directory (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int_at_least(1), default=8000, help="port (default: %(default)s)")
    parser.add_argument("--replicas", type=int_at_least(1), default=1,
                        help="replicas, each holding the model (default: %(default)s)")
    parser.add_argument("--num-cpus", type=number_in(0), default=1.0,
                        help="CPUs per replica (default: %(default)s)")
    parser.add_argument("--num-gpus", type=number_in(0), default=0.0,
                        help="GPUs per replica; a fraction shares one (default: %(default)s)")
    parser.add_argument("--max-batch-size", type=int_at_least(1), default=32,
                        help="most requests batched into shared forward passes (default: %(default)s)")
    parser.add_argument("--batch-wait-ms", type=number_in(0), default=5.0,
                        help="how long a batch waits for more requests (default: %(default)s)")
    parser.add_argument("--max-body-mb", type=number_in(0, low_open=True), default=16.0,
                        help="largest request body; larger ones get 413 (default: %(default)s)")


def _validate(args: argparse.Namespace) -> None:
    if args.port > 65535:
        raise UsageError(f"--port {args.port}: must be <= 65535")
    if args.model != "default":
        check_model_path("--model", args.model)
    check_counter("--counter", args.counter)
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise UsageError("ragprune serve needs Ray Serve: pip install ragprune[ray]") from None


def _run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from ..integrations.ray.serve import build_app
    from .prune_file import pipeline_config

    stage = None if args.model == "default" else pipeline_config(args.model, None, args.counter, "auto")
    app = build_app(stage, num_replicas=args.replicas, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                    max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_ms / 1000,
                    max_body_bytes=int(args.max_body_mb * 2**20))
    ray.init(include_dashboard=False)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name="ragprune", route_prefix="/")
        print(f"ragprune serve: http://{args.host}:{args.port} (POST /v1/prune, POST /v1/rerank, GET /v1/health); "
              "Ctrl-C stops", file=sys.stderr, flush=True)
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


SERVE_COMMAND = Command(
    help="serve a pruner over HTTP on Ray Serve (POST /v1/prune, /v1/rerank), batching across requests",
    configure=_configure,
    run=_run,
    validate=_validate,
)
