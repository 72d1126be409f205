"""MetaSchedule tuning of a whole model in one run, with the records kept in the repository.

One run tunes the union of the fused kernels of the whole-model module and of every per-block module
(deduplicated structurally, weights = how often a kernel occurs), so the per-block modules the profiler
times get exactly the schedules tuned for them, and the fixed start-up (about a minute) is paid once.

The run works in ``--work-dir`` (MetaSchedule's JSON database grows there as it goes, so an interrupted
run keeps what it measured); at the end the best record per kernel is copied (pruned) into
``kernels/tuning/<model>/<target>/`` with a ``tuning.json`` that says what was tuned and how long it took.

    python -m kernels.tvm.tune --model reference --trials-per-task 64
    python -m kernels.tvm.tune --model mobilenetv2 --input-size 224 --trials-per-task 32
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from engram.fileio import write_json_atomic
from kernels.blockwise import BlockwiseModel
from kernels.tvm.compile import prepare
from kernels.tvm.export import export_blocks
from kernels.tvm.records import META_FILE, model_key, records_dir
from kernels.tvm.targets import TargetSpec, resolve_target


def load_zoo_model(name: str, input_size: int | None = None) -> BlockwiseModel:
    """The trained reference CNN for ``reference``, a zoo model otherwise, with random weights drawn from
    ``torch.manual_seed(0)`` so that its fingerprint (and a profile's) is reproducible."""
    if name == "reference":
        from kernels.reference.store import load_reference

        model = load_reference().model
        if input_size not in (None, model.input_shape[-1]):
            from engram.errors import EngramError

            raise EngramError(f"the trained reference CNN takes {model.input_shape[-1]}x{model.input_shape[-1]} inputs, not {input_size}")
        return model
    import torch

    from kernels.zoo import build_model

    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        return build_model(name, **({"input_size": input_size} if input_size else {}))
    finally:
        torch.random.set_rng_state(state)


def extract_model_tasks(model: BlockwiseModel, spec: TargetSpec, batch: int = 1) -> list:
    """The deduplicated tuning tasks of the whole model and of every block."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    tasks: list = []
    exported = export_blocks(model, batch=batch, whole=True)
    # The whole model first: its task weights count how often a kernel runs per inference; the blocks
    # then add only kernels fused differently at a block boundary (if any).
    for e in [exported[-1], *exported[:-1]]:
        for t in ms.relax_integration.extract_tasks(prepare(e.mod, spec.target), spec.target):
            if not any(tvm_ffi.structural_equal(u.dispatched[0], t.dispatched[0]) for u in tasks):
                tasks.append(t)
    return tasks


def _worker_path() -> None:
    """Let MetaSchedule's worker processes import this checkout (for :mod:`kernels.tvm.builder`)."""
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def tune_model(
    model: BlockwiseModel,
    spec: TargetSpec,
    work_dir: Path,
    trials_per_task: int = 64,
    trials_per_iter: int = 32,
    builder_timeout: float = 30.0,
    out_root: Path | None = None,
    seed: int = 0,
) -> Path:
    """Tune every kernel of ``model`` for ``spec`` and write the pruned records into the repository."""
    from tvm.s_tir import meta_schedule as ms

    from kernels.tvm.builder import build as fast_build
    from kernels.tvm.builder import warm_up

    _worker_path()
    t0 = time.time()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tasks = extract_model_tasks(model, spec)
    print(f"{len(tasks)} tasks: " + ", ".join(t.task_name for t in tasks), flush=True)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(work_dir), seed=seed)
    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    ms.tune.tune_tasks(
        tasks=contexts,
        task_weights=weights,
        work_dir=str(work_dir),
        max_trials_global=trials_per_task * len(contexts),
        max_trials_per_task=trials_per_task,
        num_trials_per_iter=trials_per_iter,
        builder=ms.builder.LocalBuilder(timeout_sec=builder_timeout, f_build=fast_build, initializer=warm_up),
        runner=ms.runner.LocalRunner(timeout_sec=30, evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50)),
        database=database,
    )
    return export_records(model, spec, work_dir, trials_per_task, len(contexts), time.time() - t0, out_root)


def export_records(model: BlockwiseModel, spec: TargetSpec, work_dir: Path, trials_per_task: int, n_tasks: int,
                   seconds: float, out_root: Path | None = None) -> Path:
    """Prune the work directory's database to the best record per kernel and store it in the repository."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    key = model_key(model.name, model.input_shape)
    dest = records_dir(key, spec.name, out_root)
    tmp = dest.with_name(dest.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    src = ms.database.JSONDatabase(work_dir=str(work_dir), allow_missing=False)
    pruned = ms.database.JSONDatabase(work_dir=str(tmp))
    src.dump_pruned(pruned)
    all_records = src.get_all_tuning_records()
    meta = {
        "model": model.name,
        "model_key": key,
        "input_shape": [1, *model.input_shape],
        "target": spec.name,
        "tvm_target": str(spec.target),
        "tvm_version": tvm.__version__,
        "tasks": n_tasks,
        "trials_per_task": trials_per_task,
        "trials": len(all_records),
        "records": len(pruned.get_all_tuning_records()),
        "tuning_seconds": round(seconds, 1),
        "tuned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m kernels.tvm.tune", *sys.argv[1:]]),
    }
    old_meta = dest / META_FILE
    if old_meta.is_file():  # a resumed run: keep counting the time already spent
        prev = json.loads(old_meta.read_text())
        if prev.get("work_dir") == str(work_dir):
            meta["tuning_seconds"] = round(seconds + prev.get("tuning_seconds", 0.0), 1)
    meta["work_dir"] = str(work_dir)
    write_json_atomic(tmp / META_FILE, meta)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    print(f"records: {meta['records']} kernels from {meta['trials']} trials -> {dest}", flush=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.tvm.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="reference")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--target", default="local")
    p.add_argument("--trials-per-task", type=int, default=64)
    p.add_argument("--trials-per-iter", type=int, default=32)
    p.add_argument("--builder-timeout", type=float, default=30.0)
    p.add_argument("--work-dir", type=Path, default=None, help="default: /tmp/engram-tuning/<model>/<target>")
    p.add_argument("--export-only", action="store_true", help="only prune the work dir's records into the repository")
    p.add_argument("--seconds", type=float, default=0.0, help="with --export-only: tuning time to record")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model = load_zoo_model(a.model, a.input_size)
    spec = resolve_target(a.target)
    key = model_key(model.name, model.input_shape)
    work = a.work_dir or Path("/tmp/engram-tuning") / key / spec.name
    if a.export_only:
        n = len(extract_model_tasks(model, spec))
        export_records(model, spec, work, a.trials_per_task, n, a.seconds)
        return 0
    tune_model(model, spec, work, a.trials_per_task, a.trials_per_iter, a.builder_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
