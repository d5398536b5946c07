"""End-to-end archive benchmark (issue 2, item 11): vouchers/s and MB/s beside the raw limit of this machine.

Why: the sink promises hundreds of durable packages a second. This script shows how close the whole
pipeline (extract → map → validate → archive → finalize) gets to what the disk allows with the
*same* durability protocol, measured in the same run so the comparison survives noisy machines.

What it does, in order (all under a fresh var/bench/archive-<timestamp>, same filesystem as var/):
  1. seed a sample ERP with N vouchers, each with one ~50 KB attachment (timed, but in no figure);
  2. wait until creating a file costs what it normally does (wait_for_settled_inodes: after a large
     delete, ext4 without a journal makes every new file scan past recently deleted inodes);
  3. run B: the vouchers into a fresh catalog + archive, one `run_step` per step, timed per step;
  4. raw limit 1: for every package of run B (file list and sizes from its catalog, checked against
     the disk), the same files with the same sizes written with os.open/os.write into a fresh tree,
     in batches of the source's batch size, one syncfs per batch before renaming each package dir
     into place, then one syncfs: the sink's group-commit protocol;
  5. run A: `run_sync` end to end (wall time of all five steps) into another fresh catalog + archive;
  6. raw limit 2, right after it: run A is bracketed by raw loops, and the faster of the two is the
     limit (the conservative choice: a raw loop slowed alone cannot flatter the share);
  7. stricter context figure: the same bytes with fsync per file, per directory and per parent
     (no syncfs), on the first BENCH_FSYNC_PACKAGES packages (default 1000);
  8. run C (BENCH_PROFILE=1, default): the archive step alone under cProfile with one worker
     (cProfile sees one thread), broken down by where the time goes.
Before each phase everything dirty is flushed (syncfs) and nothing is deleted until the end, so a
phase never pays for the previous one's writeback or for ext4 discards of deleted trees.

Figures are printed as a table with PASS/MISS against the targets (end to end ≥ 50% of the raw
limit, ≥ 500 vouchers/s). The share is checked against the raw limit of this run; the best raw limit
this machine has shown for the same workload (var/bench/raw-best.json) is printed beside it as
context only, because the machine's state moves between runs (see best_raw_reference). Everything is also written
to var/bench/archive-latest.json. MB = 10^6 bytes. The big temporary tree is removed at the end
unless BENCH_KEEP=1.

Run: ``make bench`` or ``BENCH_VOUCHERS=10000 uv run python -m bench.bench_archive``.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_ROOT = PROJECT_ROOT / "var" / "bench"
SOURCE_ID = "erp_sample"
TARGET_SHARE = 0.50
TARGET_VPS = 500.0
MB = 1_000_000


# --------------------------------------------------------------------------- environment


def use_run_dirs(home: Path, run: str) -> Path:
    """Point the hub at <home>/<run>/ for catalog, archive and run files; the ERP stays in <home>/sample_erp."""
    base = home / run
    base.mkdir(parents=True, exist_ok=True)
    os.environ["ARCHIVE_HUB_HOME"] = str(home)
    os.environ["ARCHIVE_HUB_CATALOG_URL"] = f"sqlite:///{base / 'catalog.sqlite'}"
    os.environ["ARCHIVE_HUB_ARCHIVE_ROOT"] = str(base / "archive")
    os.environ["ARCHIVE_HUB_RUNS_ROOT"] = str(base / "runs")
    os.environ.pop("ARCHIVE_HUB_STAGING_ROOT", None)
    return base


def mount_of(path: Path) -> dict[str, str]:
    """The /proc/mounts entry holding `path` (longest mount-point prefix)."""
    path = path.resolve()
    best = {"mount_point": "?", "device": "?", "fstype": "?", "options": "?"}
    best_len = -1
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        point = parts[1].replace("\\040", " ")
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) > best_len:
            best_len = len(point)
            best = {"mount_point": point, "device": parts[0], "fstype": parts[2], "options": parts[3]}
    return best


def machine_facts() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from archive_sink.sm3_batch import accelerated

    return {
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "cpu": cpu,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "filesystem_of_var": mount_of(BENCH_ROOT),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "sm3": "multi-buffer (archive_sink/native/sm3_multi.c)"
        if accelerated()
        else "OpenSSL, one at a time",
    }


# --------------------------------------------------------------------------- pipeline runs


def warm_up_imports() -> None:
    """Import what the steps import lazily, so a long-lived worker's state is what gets measured."""
    import great_expectations  # noqa: F401

    import archive_hub.pipeline
    import archive_hub.quality  # noqa: F401


def cpu_seconds() -> float:
    """User + system CPU of this process and of its reaped children (the steps' forked workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


CPU_LOG: dict[str, float] = {}  # phase → CPU seconds it used


def run_end_to_end(home: Path, run_id: str) -> tuple[float, dict[str, Any]]:
    from archive_hub.pipeline import run_sync

    use_run_dirs(home, "e2e")
    cpu = cpu_seconds()
    started = time.perf_counter()
    summary = run_sync(SOURCE_ID, run_id)
    elapsed = time.perf_counter() - started
    CPU_LOG["e2e"] = cpu_seconds() - cpu
    return elapsed, summary


def run_per_step(home: Path, run_id: str) -> tuple[dict[str, float], dict[str, Any]]:
    from archive_hub.pipeline import STEPS, run_step

    use_run_dirs(home, "steps")
    times: dict[str, float] = {}
    result: dict[str, Any] = {}
    for step in STEPS:
        cpu = cpu_seconds()
        started = time.perf_counter()
        result = run_step(step, SOURCE_ID, run_id)
        times[step] = time.perf_counter() - started
        CPU_LOG[f"step-{step}"] = cpu_seconds() - cpu
    return times, result


# --------------------------------------------------------------------------- raw limit


def package_layout(catalog: Path) -> list[tuple[str, list[tuple[str, int]]]]:
    """(package path, [(file path, size), ...]) for every package, in the order it was archived."""
    con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT p.id, p.path, f.path, f.size FROM archive_package p "
            "JOIN archive_file f ON f.package_id = p.id ORDER BY p.id, f.id"
        ).fetchall()
    finally:
        con.close()
    layout: list[tuple[str, list[tuple[str, int]]]] = []
    last_id = None
    for pid, ppath, fpath, size in rows:
        if pid != last_id:
            layout.append((ppath, []))
            last_id = pid
        layout[-1][1].append((fpath, size))
    return layout


def check_layout_against_disk(archive_root: Path, layout: list[tuple[str, list[tuple[str, int]]]]) -> None:
    """The catalog's file list must be exactly what sits on disk (otherwise the raw loop is not 'the same bytes')."""
    for ppath, files in layout[:: max(1, len(layout) // 50)]:
        on_disk = {
            str(p.relative_to(archive_root / ppath)): p.stat().st_size
            for p in (archive_root / ppath).rglob("*")
            if p.is_file()
        }
        if on_disk != dict(files):
            raise SystemExit(f"catalog file list differs from disk for {ppath}: {on_disk} != {dict(files)}")


def raw_group_commit(
    root: Path, layout: list[tuple[str, list[tuple[str, int]]]], batch_size: int
) -> tuple[float, int, int]:
    """The sink's protocol with nothing else: write, syncfs, rename each, syncfs, per batch."""
    from archive_sink.durability import syncfs

    staging_root = root / ".staging"
    staging_root.mkdir(parents=True)
    biggest = max(size for _, files in layout for _, size in files)
    buffer = memoryview(os.urandom(biggest))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    written = files_written = 0
    started = time.perf_counter()
    for start in range(0, len(layout), batch_size):
        batch = layout[start : start + batch_size]
        staged: list[tuple[Path, Path]] = []
        for ppath, files in batch:
            staging = staging_root / f"{uuid.uuid4().hex}.partial"
            made: set[Path] = set()
            for fpath, size in files:
                target = staging / fpath
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                fd = os.open(target, flags, 0o644)
                try:
                    view = buffer[:size]
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                written += size
                files_written += 1
            staged.append((staging, root / ppath))
        syncfs(staging_root)
        for staging, final in staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)
        syncfs(root)  # like the sink: syncfs commits the renames; no per-directory fsync after it
    return time.perf_counter() - started, written, files_written


def raw_fsync_each(root: Path, layout: list[tuple[str, list[tuple[str, int]]]]) -> tuple[float, int, int]:
    """Stricter, classic per-package durability: fsync every file and directory, rename, fsync the parent."""
    from archive_sink.durability import fsync_dir

    staging_root = root / ".staging"
    staging_root.mkdir(parents=True)
    biggest = max(size for _, files in layout for _, size in files)
    buffer = memoryview(os.urandom(biggest))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    written = files_written = 0
    started = time.perf_counter()
    for ppath, files in layout:
        staging = staging_root / f"{uuid.uuid4().hex}.partial"
        made: list[Path] = []
        for fpath, size in files:
            target = staging / fpath
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.append(target.parent)
            fd = os.open(target, flags, 0o644)
            try:
                view = buffer[:size]
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            written += size
            files_written += 1
        for directory in sorted(set(made) | {staging}, key=lambda p: -len(p.parts)):
            fsync_dir(directory)  # deepest first, so each entry is durable before its parent's
        fsync_dir(staging_root)
        final = root / ppath
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        fsync_dir(final.parent)
        fsync_dir(staging_root)
    return time.perf_counter() - started, written, files_written


def best_raw_reference(report: dict[str, Any]) -> dict[str, Any]:
    """The fastest raw loop this machine has shown for this workload, this run's included: printed as context.

    Why not the verdict: on this VM the cost of writing a file moves with the machine's state from run
    to run (seen: the raw loop at 1159 packages/s, then at 560/s in the next run, its kernel CPU per
    package 0.73 then 1.66 ms, and end to end slowed alike). Against another run's raw loop the share
    measures the machine, not the hub. What guards against a raw loop slowed alone (a run at 52% once
    "passed" that way) is the bracket: run A sits between two raw loops, and the faster one counts.
    The file lives under var/bench, so it belongs to this machine and never travels with the repository.
    """
    path = BENCH_ROOT / "raw-best.json"
    key = f"{report['vouchers']} vouchers, {report['bytes_written']} bytes"
    try:
        known: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    best = known.get(key)
    if best is None or report["mb_per_s"] > best["mb_per_s"]:
        best = report
        known[key] = best
        BENCH_ROOT.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known, indent=2) + "\n")
    return best


# --------------------------------------------------------------------------- profile


# (label, how to find the function: (file suffix, function name)); cumulative times, so nested ones overlap
PROFILE_BUCKETS: list[tuple[str, str, str]] = [
    ("read valid.jsonl lines", "pipeline/jsonl.py", "read_span_lines"),
    ("pydantic model_validate_json (archive input)", "pydantic/main.py", "model_validate_json"),
    ("read attachments", "pipeline/archiver.py", "read_attachment"),
    ("catalog: known_records lookup", "catalog/records.py", "known_records"),
    ("fingerprint (model_dump + json + sha256)", "archive_sink/package.py", "fingerprint"),
    ("catalog: claim files + reserve 档号 (one transaction)", "pipeline/archiver.py", "_claim_and_reserve"),
    ("  claim attachments (booked once)", "catalog/claims.py", "claim_attachments"),
    ("  reserve 档号 (_reserve)", "pipeline/archiver.py", "_reserve"),
    ("SM3 of the batch's attachments (multi-buffer)", "archive_sink/package.py", "hash_sm3"),
    ("build_package (total)", "archive_sink/package.py", "build_package"),
    ("  voucher XML", "archive_sink/xml_documents.py", "voucher_xml"),
    ("  metadata XML", "archive_sink/xml_documents.py", "metadata_xml"),
    ("  hashing SHA-256 + SM3 (digests)", "archive_sink/hashing.py", "digests"),
    ("stage: mkdir + os.open/os.write", "archive_sink/filesystem.py", "stage"),
    ("syncfs before publish", "archive_sink/filesystem.py", "sync"),
    ("publish: rename into place", "archive_sink/filesystem.py", "publish"),
    ("syncfs after publish", "archive_sink/filesystem.py", "sync_published"),
    ("catalog: packages/files/records/events (_register)", "pipeline/archiver.py", "_register"),
    ("  hash-chained event append", "catalog/events.py", "append"),
    ("clean staging", "archive_sink/filesystem.py", "clean_staging"),
]


def profile_archive(home: Path, run_id: str) -> dict[str, Any]:
    """Run C: extract/map/validate untimed, then the archive step alone under cProfile (one worker)."""
    from archive_hub.pipeline import run_step
    from archive_hub.pipeline.archive import archive
    from archive_hub.pipeline.context import RunContext

    use_run_dirs(home, "profile")
    for step in ("extract", "map", "validate"):
        run_step(step, SOURCE_ID, run_id)
    ctx = RunContext.open(SOURCE_ID, run_id)
    profiler = cProfile.Profile()
    try:
        started = time.perf_counter()
        profiler.enable()
        result = archive(ctx, workers=1)
        profiler.disable()
        wall = time.perf_counter() - started
    finally:
        ctx.close()
    stats = pstats.Stats(profiler)
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    n = max(1, result["archived"] + result["new_versions"])
    buckets = []
    for label, suffix, name in PROFILE_BUCKETS:
        cum = sum(
            v[3] for (file, _line, func), v in raw_stats.items() if func == name and file.endswith(suffix)
        )
        buckets.append({"part": label, "seconds": round(cum, 3), "ms_per_voucher": round(cum / n * 1000, 3)})
    top = io.StringIO()
    pstats.Stats(profiler, stream=top).sort_stats("tottime").print_stats(15)
    return {
        "wall_s_under_profiler": round(wall, 3),
        "archived": n,
        "buckets": buckets,
        "top_tottime": top.getvalue(),
    }


# --------------------------------------------------------------------------- report


SETTLE_LOG: list[float] = []  # µs per empty file created, each probe of wait_for_settled_inodes


def probe_inode_allocation(home: Path, files: int = 1000) -> float:
    """µs per empty file created in a fresh directory (the files stay until the tree is removed at the end)."""
    folder = home / ".probe" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    started = time.perf_counter()
    for i in range(files):
        os.close(os.open(folder / str(i), flags, 0o644))
    return (time.perf_counter() - started) / files * 1e6


def wait_for_settled_inodes(home: Path) -> None:
    """Start measuring only once creating a file costs what it normally does.

    Why: this VM's ext4 has no journal, and without one ext4 does not reuse an inode for 60 s after it
    was deleted (360 s while its inode-table block is dirty): each new file scans past every such
    inode (recently_deleted() in ext4's ialloc.c, seen with perf). For minutes after a large delete
    (`make test`, the previous bench removing its 2 GB tree) an empty file costs 150-250 µs instead
    of 20, and every phase that creates files pays it, unevenly. Probes every 15 s until one is below
    BENCH_SETTLE_US (default 50) or BENCH_SETTLE_MAX_S (default 480) has passed, then says which.
    """
    from archive_sink.durability import syncfs

    limit_us = float(os.environ.get("BENCH_SETTLE_US", "50"))
    deadline = time.monotonic() + float(os.environ.get("BENCH_SETTLE_MAX_S", "480"))
    while True:
        syncfs(home)  # a dirty inode-table block keeps a deleted inode "recent" for 360 s instead of 60
        cost = probe_inode_allocation(home)
        SETTLE_LOG.append(cost)
        if cost <= limit_us:
            print(f"  creating a file costs {cost:.0f} µs: settled", flush=True)
            return
        if time.monotonic() >= deadline:
            print(
                f"  creating a file still costs {cost:.0f} µs (settled is <= {limit_us:.0f}): measuring anyway, "
                "expect slow and uneven figures",
                flush=True,
            )
            return
        print(f"  creating a file costs {cost:.0f} µs (recently deleted inodes): waiting 15 s", flush=True)
        time.sleep(15)


QUIESCE_LOG: list[float] = []


DROP_LOG: list[str] = []  # per phase: whether the clean page cache could be dropped before it


def quiesce(path: Path, settle_s: float = 1.0) -> None:
    """Flush what earlier phases left dirty (seeding, the previous run) so each phase pays only for itself.

    Then, where allowed (root), drop the clean page cache and read the sample ERP back into it. Why: on
    this VM every page the kernel has not touched lately costs a host fault on first write (the hypervisor
    reclaims idle guest memory: kdamond, kswapd), and each phase adds 565 MB of page cache, so a later phase
    wrote into colder memory than an earlier one (the same run_sync took 8.9 s as run B and 13.4 s as run A
    of one run). Dropped pages are reused warm, so every phase starts from the same state; the ERP's
    attachments are read back so the hub does not read them from disk while the raw loop reads nothing.
    BENCH_DROP_CACHES=0 turns this off.
    """
    from archive_sink.durability import syncfs

    started = time.perf_counter()
    syncfs(path)
    QUIESCE_LOG.append(time.perf_counter() - started)
    if os.environ.get("BENCH_DROP_CACHES", "1") == "1":
        try:
            Path("/proc/sys/vm/drop_caches").write_text("1")
        except OSError as exc:
            DROP_LOG.append(f"not dropped ({exc.strerror})")
        else:
            DROP_LOG.append("dropped")
            for file in sorted((path / "sample_erp").rglob("*")):
                if file.is_file():
                    file.read_bytes()
    else:
        DROP_LOG.append("kept (BENCH_DROP_CACHES=0)")
    time.sleep(settle_s)


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def timed(label: str, fn: Callable[[], Any]) -> Any:
    print(f"… {label}", flush=True)
    started = time.perf_counter()
    out = fn()
    print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    return out


def seed_bench_erp(home: Path, vouchers: int) -> None:
    """The benchmarks' workload: a sample ERP under `home` whose every voucher has one ~50 KB attachment."""
    from connectors.erp.sample_erp.seed import seed_sample_erp

    seed_sample_erp(
        f"sqlite:///{home / 'sample_erp' / 'erp.sqlite'}",
        home / "sample_erp" / "attachments",
        vouchers=vouchers,
        attachment_every=1,
        attachment_size=50_000,
        bad_records=False,
    )


def main() -> int:
    n = int(os.environ.get("BENCH_VOUCHERS", "10000"))
    keep = os.environ.get("BENCH_KEEP") == "1"
    profile = os.environ.get("BENCH_PROFILE", "1") == "1"
    fsync_packages = int(os.environ.get("BENCH_FSYNC_PACKAGES", "1000"))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    home = BENCH_ROOT / f"archive-{stamp}"
    home.mkdir(parents=True, exist_ok=False)
    facts = machine_facts()
    print(f"archive benchmark: {n} vouchers, ~50 KB attachment each, home {home}", flush=True)

    started = time.perf_counter()
    seed_bench_erp(home, n)
    seed_s = time.perf_counter() - started
    print(f"  seeded in {seed_s:.1f}s (not measured)", flush=True)
    timed("warm-up imports (great_expectations, pipeline)", warm_up_imports)
    timed("waiting until the inode allocator has settled", lambda: wait_for_settled_inodes(home))

    from archive_hub.settings import Settings
    from archive_hub.sources import find_source

    use_run_dirs(home, "e2e")
    batch_size = find_source(SOURCE_ID, Settings.from_env()).batch_size

    try:
        # Run B first: its catalog gives the layout the raw loops write, so run A can be bracketed by a
        # raw loop just before it and another just after it, in the machine's state of that moment.
        quiesce(home)
        step_times, steps_summary = timed(
            "run B: one run_step per step", lambda: run_per_step(home, "bench-steps")
        )
        if steps_summary["archived"] != n or steps_summary["quarantined"]:
            raise SystemExit(f"run B did not archive every voucher: {steps_summary}")
        bytes_written = steps_summary["bytes_written"]
        archived = steps_summary["archived"] + steps_summary["new_versions"]

        layout = package_layout(home / "steps" / "catalog.sqlite")
        check_layout_against_disk(home / "steps" / "archive", layout)
        raw_bytes_expected = sum(size for _, files in layout for _, size in files)
        if raw_bytes_expected != bytes_written or len(layout) != archived:
            raise SystemExit(
                f"layout mismatch: {len(layout)} packages / {raw_bytes_expected} B vs {archived} / {bytes_written}"
            )
        files_per_package = sum(len(f) for _, f in layout) / len(layout)

        def raw_limit(i: int) -> float:
            quiesce(home)
            cpu = cpu_seconds()
            t, b, _ = timed(
                f"raw limit {i}/2: same bytes, group commit, batch {batch_size}",
                lambda: raw_group_commit(home / f"raw-{i}", layout, batch_size),
            )
            assert b == bytes_written, (b, bytes_written)
            CPU_LOG[f"raw-{i}"] = cpu_seconds() - cpu
            return t

        raw_runs = [raw_limit(1)]
        quiesce(home)
        e2e_s, summary = timed("run A: run_sync end to end", lambda: run_end_to_end(home, "bench-e2e"))
        if (
            summary["archived"] + summary["new_versions"] != n
            or summary["quarantined"]
            or summary["status"] != "success"
        ):
            raise SystemExit(f"run A did not archive every voucher: {summary}")
        if summary["bytes_written"] != bytes_written:
            raise SystemExit(f"run A wrote {summary['bytes_written']} bytes, run B {bytes_written}")
        raw_runs.append(raw_limit(2))
        raw_s = min(raw_runs)
        raw_cpu = CPU_LOG[f"raw-{raw_runs.index(raw_s) + 1}"]

        strict_layout = layout[:fsync_packages]
        strict_bytes = sum(size for _, files in strict_layout for _, size in files)
        quiesce(home)
        strict_s, _, _ = timed(
            f"raw fsync-per-file on {len(strict_layout)} packages",
            lambda: raw_fsync_each(home / "raw-fsync", strict_layout),
        )

        prof = None
        if profile:
            quiesce(home)
            prof = timed(
                "run C: archive step under cProfile (1 worker)", lambda: profile_archive(home, "bench-prof")
            )
    finally:
        if not keep:  # deleted only at the end: big deletes (ext4 discard, journal) would slow later phases
            timed(f"removing {home}", lambda: shutil.rmtree(home, ignore_errors=True))

    e2e_vps, e2e_mbps = rate(archived, e2e_s), rate(bytes_written, e2e_s) / MB
    raw_pps, raw_mbps = rate(len(layout), raw_s), rate(bytes_written, raw_s) / MB
    strict_pps, strict_mbps = rate(len(strict_layout), strict_s), rate(strict_bytes, strict_s) / MB
    share = e2e_mbps / raw_mbps if raw_mbps else 0.0
    best_raw = best_raw_reference(
        {
            "vouchers": archived,
            "bytes_written": bytes_written,
            "mb_per_s": raw_mbps,
            "packages_per_s": raw_pps,
            "when": dt.datetime.now().isoformat(timespec="seconds"),
        }
    )
    share_best = e2e_mbps / best_raw["mb_per_s"] if best_raw["mb_per_s"] else 0.0
    share_ok = share >= TARGET_SHARE
    steps_total = sum(step_times.values())

    w = 96
    print()
    print("=" * w)
    print(f"ARCHIVE BENCHMARK  {dt.datetime.now().isoformat(timespec='seconds')}")
    print("=" * w)
    fs = facts["filesystem_of_var"]
    print(
        f"machine   {facts['cores']} cores ({facts['usable_cores']} usable), {facts['cpu']}, {facts['memory_gb']} GB RAM"
    )
    print(f"python    {facts['python']} on {facts['platform']}")
    print(f"SM3       {facts['sm3']}")
    load = facts["load_average_at_start"]
    if load:
        note = "  (other work was running: figures are pessimistic)" if load[0] > 0.7 else ""
        print(f"load      {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start (1/5/15 min){note}")
    print(f"var/ fs   {fs['fstype']} on {fs['device']} at {fs['mount_point']} ({fs['options']})")
    print(
        f"workload  {archived} vouchers -> {len(layout)} packages, {files_per_package:.1f} files/package, "
        f"{bytes_written / MB:.1f} MB ({bytes_written / archived / 1000:.1f} KB/package), batch {batch_size}"
    )
    print(
        "inodes    µs per empty file created, probed before measuring: "
        + ", ".join(f"{t:.0f}" for t in SETTLE_LOG)
        + f" (settled <= {os.environ.get('BENCH_SETTLE_US', '50')})"
    )
    print(
        f"seeding   {seed_s:.1f}s (not part of any figure); flush before each phase: "
        + ", ".join(f"{t:.2f}" for t in QUIESCE_LOG)
        + " s"
    )
    print(f"page cache before each phase: {', '.join(DROP_LOG)} (quiesce)")
    print("-" * w)
    print(f"{'figure':<44}{'time s':>9}{'vouchers/s':>13}{'MB/s':>9}   limit / target")
    print("-" * w)
    print(f"{'end to end: run_sync (5 steps)':<44}{e2e_s:>9.2f}{e2e_vps:>13.0f}{e2e_mbps:>9.1f}")
    print(
        f"{'raw limit: same bytes, syncfs group commit':<44}{raw_s:>9.2f}{raw_pps:>13.0f}{raw_mbps:>9.1f}   "
        f"best of {', '.join(f'{t:.2f}' for t in raw_runs)} s"
    )
    print(
        f"{'raw, fsync per file+dir (context, stricter)':<44}{strict_s:>9.2f}{strict_pps:>13.0f}{strict_mbps:>9.1f}   "
        f"{len(strict_layout)} packages"
    )
    print(
        f"{'raw limit, best seen on this machine':<44}{'':>9}{best_raw['packages_per_s']:>13.0f}"
        f"{best_raw['mb_per_s']:>9.1f}   {best_raw['when']} (var/bench/raw-best.json)"
    )
    print("-" * w)
    print(
        f"{'end to end / raw limit of this run':<44}{share * 100:>30.1f} %   target >= {TARGET_SHARE:.0%}  "
        f"{verdict(share_ok)}  (the faster raw loop, of one just before and one just after run A)"
    )
    print(
        f"{'end to end / best raw limit seen here':<44}{share_best * 100:>30.1f} %   context: another run, "
        "maybe another state of the machine"
    )
    print(
        f"{'end to end vouchers/s':<44}{e2e_vps:>30.0f}     target >= {TARGET_VPS:.0f}    "
        f"{verdict(e2e_vps >= TARGET_VPS)}"
    )
    cores = facts["usable_cores"] or 1
    e2e_cpu_ms = CPU_LOG["e2e"] / archived * 1000
    raw_cpu_ms = raw_cpu / len(layout) * 1000
    print(
        f"CPU (user+sys, all processes): end to end {e2e_cpu_ms:.3f} ms/voucher, so at most "
        f"{cores / e2e_cpu_ms * 1000:.0f} vouchers/s on {cores} cores; raw loop {raw_cpu_ms:.3f} ms/package"
    )
    print("-" * w)
    print(
        f"run B, one run_step per step (fresh catalog + archive), total {steps_total:.2f}s "
        f"= {rate(n, steps_total):.0f} vouchers/s"
    )
    for step, t in step_times.items():
        print(
            f"  {step:<10}{t:>8.2f}s  {t / n * 1000:>7.3f} ms/voucher  {t / steps_total:>6.1%}  "
            f"{rate(n, t):>9.0f} vouchers/s   CPU {CPU_LOG[f'step-{step}'] / n * 1000:.3f} ms/voucher"
        )
    if prof:
        print("-" * w)
        print(
            f"run C, archive step under cProfile, 1 worker: {prof['wall_s_under_profiler']:.2f}s "
            f"(cumulative; indented rows are inside the row above)"
        )
        for b in prof["buckets"]:
            print(f"  {b['part']:<54}{b['seconds']:>8.2f}s {b['ms_per_voucher']:>8.3f} ms/voucher")
        print("  top functions by own time:")
        lines = prof["top_tottime"].splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        for line in lines[start:]:
            if line.strip():
                print("   " + line.replace(str(PROJECT_ROOT) + "/", "")[:150])
    print("=" * w)

    report = {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": facts,
        "vouchers": archived,
        "packages": len(layout),
        "files_per_package": round(files_per_package, 2),
        "bytes_written": bytes_written,
        "batch_size": batch_size,
        "seed_s": round(seed_s, 3),
        "end_to_end": {
            "seconds": round(e2e_s, 3),
            "cpu_ms_per_voucher": round(CPU_LOG["e2e"] / archived * 1000, 4),
            "vouchers_per_s": round(e2e_vps, 1),
            "mb_per_s": round(e2e_mbps, 2),
        },
        "raw_group_commit": {
            "seconds": round(raw_s, 3),
            "cpu_ms_per_package": round(raw_cpu / len(layout) * 1000, 4),
            "runs_s": [round(t, 3) for t in raw_runs],
            "packages_per_s": round(raw_pps, 1),
            "mb_per_s": round(raw_mbps, 2),
        },
        "raw_fsync_per_file": {
            "packages": len(strict_layout),
            "seconds": round(strict_s, 3),
            "packages_per_s": round(strict_pps, 1),
            "mb_per_s": round(strict_mbps, 2),
        },
        "share_of_raw": round(share, 4),
        "share_of_best_raw_seen": round(share_best, 4),
        "best_raw_seen": best_raw,
        "targets": {
            "share_of_raw": {"target": TARGET_SHARE, "pass": share_ok},
            "vouchers_per_s": {"target": TARGET_VPS, "pass": e2e_vps >= TARGET_VPS},
        },
        "steps_s": {k: round(v, 3) for k, v in step_times.items()},
        "steps_cpu_ms_per_voucher": {k: round(CPU_LOG[f"step-{k}"] / n * 1000, 4) for k in step_times},
        "archive_profile": {k: v for k, v in prof.items() if k != "top_tottime"} if prof else None,
        "flush_before_phases_s": [round(t, 3) for t in QUIESCE_LOG],
        "page_cache_before_phases": DROP_LOG,
        "file_create_us_probes": [round(t, 1) for t in SETTLE_LOG],
        "kept": str(home) if keep else None,
    }
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    (BENCH_ROOT / "archive-latest.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"figures written to {BENCH_ROOT / 'archive-latest.json'}" + (f"; kept {home}" if keep else ""))
    return 0 if share_ok and e2e_vps >= TARGET_VPS else 1


if __name__ == "__main__":
    sys.exit(main())
