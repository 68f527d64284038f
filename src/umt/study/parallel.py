"""A study's independent stages trained at once, one per worker process (``jobs``).

The stages of a study form a small graph: each seed's teachers and the methods that need no
teacher (joint training, the peers) are independent; UMT and its family wait for the teachers of
their seed (with ``umt.select: better``, for every seed's teachers and joint training).
:func:`prefill` runs that graph on ``jobs`` worker processes; each job is an ordinary share of
the study (:meth:`umt.study.runner.Runner.teachers`, :meth:`~umt.study.runner.Runner.run_seed` for
one method), so it writes its stage directory exactly as the serial run would. The main process
then runs the study as usual and finds every stage cached: probes, UME, the summary and the report
are made as always.

Same numbers as one after another: every stage seeds itself (``seed_everything``) and runs with
the same number of threads (``threads_per_job``) whichever way it is scheduled; only the order
in which stages finish changes. Workers are started with ``spawn`` (a fork of a process whose
thread pools have started can deadlock).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from umt.engine import eval_device
from umt.engine.config import TrainConfig
from umt.errors import UMTError
from umt.methods import METHODS
from umt.study.config import StudyConfig
from umt.study.inputs import study_inputs
from umt.study.runner import Runner
from umt.study.select import pooled

Log = Callable[[str], None]


@dataclass(frozen=True)
class Job:
    """One share of a study: the teacher of ``modality``, or the stages of ``method``."""

    seed: int
    modality: str | None = None
    method: str | None = None

    @property
    def name(self) -> str:
        return f"seed{self.seed}/" + (
            f"teacher-{self.modality}" if self.modality is not None else str(self.method)
        )


def plan(cfg: StudyConfig, modalities: Sequence[str]) -> list[Job]:
    """The study's trained shares, in the order they should start: every seed's joint training
    first (the longest stage, and UMT's ``select`` waits for every seed's), then the teachers
    (UMT waits for them), then the other methods by seed. UME trains nothing and is left to the
    main process; so are teachers read from files (``teachers``). Started by seed, the last
    seed's joint training ran alone while the other worker waited on it (the default study:
    12 stages on 2 workers)."""
    trained = [m for m in cfg.methods if METHODS[m].build is not None]
    jobs = [Job(seed, method="joint") for seed in cfg.seeds if "joint" in trained]
    for seed in cfg.seeds:
        jobs += [Job(seed, modality=m) for m in modalities if m not in cfg.teachers]
    for seed in cfg.seeds:
        jobs += [Job(seed, method=m) for m in trained if m != "joint"]
    return jobs


def finished(job: Job, cfg: StudyConfig, run_dir: Path) -> bool:
    """Whether ``job``'s stages have all finished once (a ``result.json``); a stage whose
    settings changed since is retrained by the main process's pass instead."""
    if job.modality is not None:
        names = [f"teacher-{job.modality}"]
    else:
        names = [name for name, _ in cfg.fusion_stages(str(job.method))]
    return all((run_dir / f"seed{job.seed}" / n / "result.json").is_file() for n in names)


def needs(job: Job, cfg: StudyConfig, modalities: Sequence[str]) -> set[Job]:
    """The jobs that must finish before ``job`` starts: a method's seed's teachers, and for UMT
    choosing what to distil on validation (``umt.select: better``, one decision over the study's
    seeds) every seed's teachers and joint training."""
    if job.method is None or not METHODS[job.method].uses_teachers:
        return set()
    teachers = [m for m in modalities if m not in cfg.teachers]
    out = {Job(job.seed, modality=m) for m in teachers}
    if pooled(cfg, job.method):
        out |= {Job(s, modality=m) for s in cfg.seeds for m in teachers}
        out |= {Job(s, method="joint") for s in cfg.seeds}
    return out


def distributed(cfg: TrainConfig) -> bool:
    """Whether training runs in several processes (DDP: a launcher's ``WORLD_SIZE``, more than
    one device or node, or a ``ddp`` strategy)."""
    return (
        int(os.environ.get("WORLD_SIZE", "1")) > 1
        or str(cfg.devices) not in ("auto", "1")
        or cfg.num_nodes > 1
        or "ddp" in cfg.strategy
    )


#: ``jobs: auto`` starts workers only when the study's unfinished shares see at least this many
#: input values in training (each share's epochs x train split x values per sample): a
#: worker costs seconds to start (PyTorch, Lightning), more than a tiny study takes to train.
#: Counted in values, not samples, so that a study of few large samples (the ``rgbd`` recipe:
#: 600 scenes of 32x32x4, minutes per stage) runs in parallel too. Workers are started once per
#: study, so the sum over its shares is what pays for them.
AUTO_MIN_WORK = 50_000_000


def share_epochs(cfg: StudyConfig, job: Job) -> int:
    """The epochs ``job`` trains at most: its recipe's cap (a method's ``train:`` on top of the
    study's), once per stage it trains (a fusion sweep trains a method once per fusion module)."""
    if job.modality is not None:
        return cfg.train.epochs  # the teachers train under the study's recipe
    method = str(job.method)
    return cfg.train_for(method).epochs * len(cfg.fusion_stages(method))


def resolve_jobs(
    cfg: StudyConfig, shares: Sequence[Job], n_train: int, sample_values: int = 1
) -> int:
    """How many stages train at once: ``cfg.jobs``, or for ``auto`` one per CPU core (at most
    one per share) when training runs on the CPU in one process and the study is not tiny
    (``AUTO_MIN_WORK``, over the ``shares`` still to train, each at its own recipe's epochs;
    ``sample_values``: input values per training sample); 1 on an accelerator or under DDP
    (every process of a DDP run trains every stage together)."""
    n_jobs = len(shares)
    if distributed(cfg.train):
        return 1
    if cfg.jobs != "auto":
        return max(1, min(int(cfg.jobs), n_jobs))
    work = sum(share_epochs(cfg, j) for j in shares) * n_train * sample_values
    if eval_device(cfg.train).type != "cpu" or work < AUTO_MIN_WORK:
        return 1
    return max(1, min(os.cpu_count() or 1, n_jobs))


def threads_per_job(cfg: StudyConfig, jobs: int) -> int:
    """Each job's PyTorch threads: ``train.threads``, or the cores shared out (at least 1)."""
    if cfg.train.threads > 0:
        return cfg.train.threads
    return max(1, (os.cpu_count() or 1) // jobs)


def prefill(
    cfg: StudyConfig,
    run_dir: Path,
    modalities: Sequence[str],
    n_train: int,
    log: Log,
    sample_values: int = 1,
) -> list[str]:
    """Train the study's unfinished stages on worker processes (:func:`resolve_jobs` of them;
    none, and nothing done here, when that is 1); the stages trained, in the order they
    finished. Raises what a worker raised (the other jobs are cancelled; finished stages stay
    cached)."""
    shares = plan(cfg, modalities)
    done = {j for j in shares if finished(j, cfg, run_dir)}  # e.g. the teachers, on a rerun
    todo = [j for j in shares if j not in done]
    jobs = resolve_jobs(cfg, todo, n_train, sample_values)
    if jobs <= 1:
        return []
    threads = threads_per_job(cfg, jobs)
    log(
        f"training {len(todo)} share(s) of the study on {jobs} worker processes "
        f"({threads} thread(s) each; jobs=1 trains them one after another)"
    )
    trained: list[str] = []
    running: dict[Future[tuple[list[str], list[str]]], Job] = {}
    context = multiprocessing.get_context("spawn")
    quiet = replace(cfg, train=replace(cfg.train, progress=False))  # no bars from the workers
    start = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_start,
        initargs=(quiet, run_dir, threads, os.getpid()),
    ) as pool:
        try:
            while todo or running:
                ready = [j for j in todo if needs(j, cfg, modalities) <= done]
                # Waiting UMT-family jobs first: they are what the end of the run waits on.
                ready.sort(key=lambda j: not needs(j, cfg, modalities))
                if not ready and not running:  # nothing can start: the main pass does the rest
                    break
                for job in ready[: jobs - len(running)]:
                    todo.remove(job)
                    running[pool.submit(_run_job, job)] = job
                    log(f"{job.name}: started in a worker")
                ended, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in ended:
                    job = running[future]
                    lines, names = future.result()  # a worker's exception is raised here
                    del running[future]
                    for line in lines:
                        log(line)
                    trained += names
                    done.add(job)
        except BrokenProcessPool as e:
            _stop(pool)
            busy = ", ".join(sorted(j.name for j in running.values()))
            raise UMTError(
                f"a worker process died while training {busy} (killed, or out of memory?); "
                "finished stages are kept and the interrupted ones resume from their last "
                "checkpoint: run the same command again (jobs=1 trains in this process)"
            ) from e
        except BaseException:  # Ctrl-C, SIGTERM, a worker's error: stop the others now
            _stop(pool)
            raise
    log(f"{len(trained)} stage(s) trained by the workers in {time.perf_counter() - start:.1f} s")
    return trained


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers at once: their stages are checkpointed
    every epoch, so the next run resumes them. (The executor has no public way to end running
    workers before Python 3.14, hence ``_processes``.)"""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


# -- in a worker process ----------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _start(cfg: StudyConfig, run_dir: Path, threads: int, parent: int) -> None:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    data, task = study_inputs(cfg, None, None)
    lines: list[str] = []
    _WORKER["lines"] = lines
    _WORKER["runner"] = Runner(cfg, data, task, run_dir, lines.append, worker=True)


def _exit_with(parent: int) -> None:
    """End this worker once the study's process is gone (killed with no chance to stop its
    workers: ``kill -9``, or a SIGTERM to a program that runs the study in-process): an
    orphan would train on, and write into a run directory whose lock is released. Its stage
    resumes from its last checkpoint on the next run. ``parent``: the study's pid, as it gave
    it (it may be gone before this worker has started)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _run_job(job: Job) -> tuple[list[str], list[str]]:
    """Run ``job``; its log lines and the stages it trained."""
    runner, lines = _WORKER["runner"], _WORKER["lines"]
    lines.clear()
    runner.trained.clear()
    out: dict[str, Any] = {"stages": {}, "probes": {}, "failed": {}}
    if job.modality is not None:
        runner.teachers(job.seed, out, [job.modality])
    else:
        runner.run_seed(job.seed, [str(job.method)])
    return list(lines), list(runner.trained)
