from datetime import UTC, datetime, timedelta

import pytest

from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.jobs import (
    ApplicationSpec,
    Job,
    JobAttributes,
    JobStatus,
    apply_status_update,
    check_job_name,
    check_priority,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = JobStatus


def make_job() -> Job:
    return Job(
        id=1,
        user_id="alice",
        user_email="alice@example.org",
        job_name="j",
        environment=None,
        priority=0,
        application=ApplicationSpec("decode", "v0_10_1", "train"),
        attributes=JobAttributes(),
        hardware=None,
        date_created=T0,
    )


def run(job, *statuses):
    outcomes = []
    for i, status in enumerate(statuses, start=1):
        outcomes.append(apply_status_update(job, status, None, T0 + timedelta(minutes=i)))
    return outcomes


def test_dates_are_set_once():
    job = make_job()
    run(job, S.pulled, S.running, S.pulled, S.finished, S.error)
    assert job.date_started == T0 + timedelta(minutes=1)
    assert job.date_finished == T0 + timedelta(minutes=4)
    assert job.status is S.finished


def test_terminal_is_final_and_entered_once():
    job = make_job()
    outcomes = run(job, S.running, S.error, S.finished, S.running, S.queued)
    assert [o.entered_terminal for o in outcomes] == [False, True, False, False, False]
    assert job.status is S.error


def test_skipping_steps_and_stale_updates():
    job = make_job()
    (o,) = run(job, S.postprocessing)
    assert o.applied and job.date_started is not None
    (stale,) = run(job, S.preprocessing)
    assert stale.stale and not stale.applied and job.status is S.postprocessing


def test_requeue_keeps_date_started():
    job = make_job()
    run(job, S.pulled, S.running, S.queued)
    assert job.status is S.queued and job.date_started == T0 + timedelta(minutes=1)
    run(job, S.pulled)
    assert job.date_started == T0 + timedelta(minutes=1)


def test_runtime_details_are_appended():
    job = make_job()
    apply_status_update(job, S.running, "started", T0)
    apply_status_update(job, S.running, "", T0)
    apply_status_update(job, S.running, None, T0)
    apply_status_update(job, S.finished, "done", T0)
    assert job.runtime_details == "started\ndone"


def test_error_from_queued_sets_no_start():
    job = make_job()
    (o,) = run(job, S.error)
    assert o.entered_terminal and job.date_started is None and job.date_finished is not None


@pytest.mark.parametrize("name", ["", "../data", "a/b", ".hidden", "x" * 129, "trailing.", "sp ace", "a\\b"])
def test_bad_job_names(name):
    with pytest.raises(InvalidRequest):
        check_job_name(name)


@pytest.mark.parametrize("name", ["decode_test", "run-1.2", "A+B"])
def test_good_job_names(name):
    assert check_job_name(name) == name


@pytest.mark.parametrize("priority", [-1, 6, 10**20])
def test_priority_range(priority):
    with pytest.raises(InvalidRequest):
        check_priority(priority)


def test_event_details_keep_their_newest_characters_and_are_never_refused() -> None:
    from decode_userapi.domain.events import MAX_EVENT_DETAILS, STATUS, EventNote

    long = EventNote(STATUS, JobStatus.running, "x" * 10_000 + "\nlast line\x00")
    assert long.details is not None and len(long.details) <= MAX_EVENT_DETAILS
    assert long.details.endswith("last line\ufffd") and long.details.startswith("[… ")
    assert EventNote(STATUS, JobStatus.running, "").details is None
