"""Job records on disk: round trip, restart semantics, id validation, retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acetate.errors import InputError
from acetate.jobs.job import JOB_ID, check_job_id, new_job_id
from acetate.jobs.store import JobStore, StoredJob
from acetate.protocol import JobError, JobRecord


def stored(job_id: str, status: str = "done", *, finished: float | None = None) -> StoredJob:
    error = JobError(code="x", message="y") if status == "error" else None
    return StoredJob(
        record=JobRecord(id=job_id, status=status, error=error),
        client_id="krita",
        owner="krita",
        created=time.time() - 10,
        finished=finished if finished is not None else time.time(),
    )


def test_records_survive_a_new_store(tmp_path: Path) -> None:
    first = JobStore(tmp_path)
    job = stored(new_job_id())
    first.save(job)
    (first.result_dir(job.record.id)).mkdir()
    (first.result_dir(job.record.id) / "foreground.png").write_bytes(b"png")
    again = JobStore(tmp_path).load_all()
    assert [j.record for j in again] == [job.record]
    assert again[0].client_id == "krita"


def test_unfinished_jobs_become_interrupted_errors_without_files(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    running = stored(new_job_id(), "started", finished=0)
    running.finished = None
    store.save(running)
    partial = store.result_dir(running.record.id)
    partial.mkdir()
    (partial / "foreground.png").write_bytes(b"half")
    [loaded] = JobStore(tmp_path).load_all()
    assert loaded.record.status == "error"
    assert loaded.record.error is not None and loaded.record.error.code == "interrupted"
    assert not partial.exists()
    # and the conversion itself is persisted
    assert JobStore(tmp_path).load_all()[0].record.status == "error"


def test_unreadable_and_foreign_files_are_skipped(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    good = stored(new_job_id())
    store.save(good)
    (store.root / f"{new_job_id()}.json").write_text("{not json")
    (store.root / "j_notanid.json").write_text("{}")
    (store.root / "notes.txt").write_text("hello")
    mismatched = stored(new_job_id())
    (store.root / f"{new_job_id()}.json").write_text(mismatched.model_dump_json())
    assert [j.record.id for j in store.load_all()] == [good.record.id]


@pytest.mark.parametrize(
    "value",
    [
        "..",
        "../etc/passwd",
        "j_",
        "j_" + "0" * 31,
        "J_" + "0" * 32,
        "j_" + "0" * 32 + "/x",
        "/abs",
        "j_" + "g" * 32,
        "j_" + "0" * 32 + "\x00",
        "",
    ],
)
def test_bad_ids_never_become_paths(tmp_path: Path, value: str) -> None:
    store = JobStore(tmp_path)
    with pytest.raises(InputError) as caught:
        store.result_dir(value)
    assert caught.value.field == "id"


@given(st.text(max_size=60))
def test_only_exact_job_ids_pass(value: str) -> None:
    if JOB_ID.fullmatch(value):
        assert check_job_id(value) == value
    else:
        with pytest.raises(InputError):
            check_job_id(value)


def test_new_ids_are_valid_and_unique() -> None:
    ids = {new_job_id() for _ in range(200)}
    assert len(ids) == 200 and all(JOB_ID.fullmatch(i) for i in ids)


def test_expiry_by_age_then_by_total_size(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    now = time.time()
    old = stored(new_job_id(), finished=now - 100)
    mid = stored(new_job_id(), finished=now - 50)
    new = stored(new_job_id(), finished=now - 1)
    for job, size in ((old, 10), (mid, 1000), (new, 1000)):
        folder = store.result_dir(job.record.id)
        folder.mkdir()
        (folder / "foreground.png").write_bytes(b"x" * size)
    jobs = [old, mid, new]
    assert store.expired(jobs, max_age_s=80, max_total_bytes=10**9, now=now) == [old.record.id]
    doomed = store.expired(jobs, max_age_s=1000, max_total_bytes=1500, now=now)
    assert doomed == [old.record.id, mid.record.id]  # oldest first until under the cap
    running = stored(new_job_id())
    running.finished = None
    assert running.record.id not in store.expired(
        [*jobs, running], max_age_s=0, max_total_bytes=0, now=now
    )


def test_delete_removes_record_and_files(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = stored(new_job_id())
    store.save(job)
    store.result_dir(job.record.id).mkdir()
    store.delete(job.record.id)
    assert not store.result_dir(job.record.id).exists()
    assert store.load_all() == []
