"""Tensor parallelism over Paddle's own distributed runtime (gloo on CPU, NCCL on a GPU build).

`python -m paddle.distributed.launch --nproc_per_node N script.py` starts N processes with
PADDLE_TRAINERS_NUM=N and PADDLE_TRAINER_ID=0..N-1; the world they form is the tensor-parallel
group. `start_local_ranks` does the same from inside one process, for N on this host;
`join_tensor_parallel` picks between the two for Predictor.from_pretrained. Every collective goes
through `paddle.distributed` (all_reduce, broadcast) under a watchdog: a rank that dies makes the
collective fail, a rank that hangs makes it outlast PADDLE_QWENVL_TP_TIMEOUT seconds, and either
way this process exits with an error instead of waiting forever.
"""
import atexit
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import paddle
import paddle.distributed as dist

from . import settings


@dataclass(frozen=True)
class TensorParallel:
    rank: int
    world_size: int

    @property
    def is_driver(self) -> bool:
        """Rank 0 schedules, samples and detokenizes; the others run the model on its inputs."""
        return self.rank == 0


def launched_world_size() -> int:
    """The number of processes paddle.distributed.launch started (1 without it)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)


_WATCHDOG = None


def init_tensor_parallel() -> Optional[TensorParallel]:
    """The group of this launch (joined once per process), or None for a single process."""
    global _WATCHDOG
    if launched_world_size() < 2:
        return None
    if _WATCHDOG is None:
        _WATCHDOG = Watchdog(settings.tp_timeout())
    if not dist.is_initialized():
        with _WATCHDOG.bounded("joining the other ranks (init_parallel_env)"):
            dist.init_parallel_env()
    return TensorParallel(dist.get_rank(), dist.get_world_size())


class Watchdog:
    """Ends the process (exit status 1, one line on stderr) when a collective outlasts `timeout`
    seconds: another rank hangs or died without its socket closing. A daemon thread checks the
    running collective's deadline once a second."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._deadline = None           # (monotonic deadline, what) while a collective runs
        self.seconds = Counter()        # what -> seconds spent in it (collective_seconds())
        threading.Thread(target=self._watch, name="tp-watchdog", daemon=True).start()

    @contextmanager
    def bounded(self, what: str):
        start = time.monotonic()
        self._deadline = (start + self.timeout, what)
        try:
            yield
        except Exception as e:          # a peer's socket closed: it died
            fail(f"{what} failed ({str(e).splitlines()[0][:200]}): another rank died")
        finally:
            self._deadline = None
            self.seconds[what] += time.monotonic() - start

    def _watch(self):
        while True:
            time.sleep(1.0)
            running = self._deadline
            if running and time.monotonic() > running[0]:
                fail(f"{running[1]} did not finish within {self.timeout:g} s "
                     f"({settings.TP_TIMEOUT.env}): another rank hangs or died")


def start_local_ranks(size: int, follower_command) -> None:
    """Make this process rank 0 of `size` on this host and start ranks 1..size-1 as
    `follower_command` subprocesses, the environment paddle.distributed.launch would give them
    (their stdout dropped: rank 0 alone prints). Call before init_tensor_parallel()."""
    master, *endpoints = [f"127.0.0.1:{port}" for port in _free_ports(size + 1)]
    common = dict(PADDLE_MASTER=master, PADDLE_TRAINERS_NUM=str(size), PADDLE_GLOBAL_SIZE=str(size),
                  PADDLE_LOCAL_SIZE=str(size), PADDLE_NNODES="1", PADDLE_TRAINER_ENDPOINTS=",".join(endpoints),
                  PADDLE_DISTRI_BACKEND="nccl" if paddle.is_compiled_with_cuda() else "gloo")
    followers = []
    for rank in reversed(range(size)):              # rank 0 last: this process
        env = dict(common, PADDLE_TRAINER_ID=str(rank), PADDLE_GLOBAL_RANK=str(rank), PADDLE_LOCAL_RANK=str(rank),
                   PADDLE_RANK_IN_NODE=str(rank), PADDLE_CURRENT_ENDPOINT=endpoints[rank],
                   **({"FLAGS_selected_gpus": str(rank)} if paddle.is_compiled_with_cuda() else {}))
        if rank == 0:
            os.environ.update(env)
        else:
            followers.append(subprocess.Popen(follower_command, env=dict(os.environ, **env),
                                              stdout=subprocess.DEVNULL))
    atexit.register(_reap, followers)


def _free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _reap(followers) -> None:
    """At exit (after rank 0 told them to stop): wait for the followers a little, then kill them."""
    for process in followers:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def collective_seconds() -> dict:
    """Seconds this process has spent in each kind of collective ("all_reduce", "broadcast"),
    waiting for the slowest rank included."""
    return dict(_WATCHDOG.seconds) if _WATCHDOG else {}


def fail(message: str) -> None:
    """One error line, then exit at once: a collective cannot be abandoned and retried."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    print(f"error: tensor parallel rank {rank}: {message}", file=sys.stderr, flush=True)
    os._exit(1)


REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


def all_reduce(x: paddle.Tensor, op: str = "sum") -> paddle.Tensor:
    """Sum (or max) of x over the ranks, in place (x is returned)."""
    with _watchdog().bounded("all_reduce"):
        dist.all_reduce(x, op=REDUCE_OPS[op])
    return x


def broadcast(x: paddle.Tensor) -> paddle.Tensor:
    """Rank 0's x on every rank, in place (x is returned)."""
    with _watchdog().bounded("broadcast"):
        dist.broadcast(x, src=0)
    return x


def _watchdog() -> Watchdog:
    if _WATCHDOG is None:
        raise RuntimeError("a tensor-parallel collective before init_tensor_parallel(): build split models "
                           "through Predictor.from_pretrained or load_model(tp=init_tensor_parallel())")
    return _WATCHDOG


def wait_for_driver(x: paddle.Tensor) -> paddle.Tensor:
    """broadcast(x) with no time bound: a follower waits for rank 0's next step as long as rank 0
    has no work (a chat waiting for input, an idle server); rank 0 dying still ends the wait."""
    try:
        dist.broadcast(x, src=0)
    except Exception as e:
        fail(f"waiting for rank 0 failed ({str(e).splitlines()[0][:200]}): rank 0 died")
    return x


def join_tensor_parallel(tensor_parallel_size: Optional[int], options: dict):
    """This process's TensorParallel (None for one process): the launch's, checked against the size
    asked for, or a group of that size started here (the followers load with the same `options`)."""
    launched = launched_world_size()
    if tensor_parallel_size in (None, launched):
        return init_tensor_parallel()
    if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be a positive number of processes, got {tensor_parallel_size!r}")
    if launched > 1:
        raise ValueError(f"tensor_parallel_size={tensor_parallel_size}, but {launched} processes were launched: "
                         f"give --nproc_per_node {tensor_parallel_size} to paddle.distributed.launch, or leave "
                         "tensor_parallel_size out")
    follower = dict(options, model_dir=str(options["model_dir"]), progress=False)
    start_local_ranks(tensor_parallel_size, [sys.executable, "-c", FOLLOWER, json.dumps(follower)])
    return init_tensor_parallel()


# a follower started by join_tensor_parallel: from_pretrained never returns there
FOLLOWER = "import json, sys; from paddle_qwenvl import Predictor; Predictor.from_pretrained(**json.loads(sys.argv[1]))"
