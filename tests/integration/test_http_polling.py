"""Cheap polling: `GET /jobs` and `GET /jobs/{id}` carry a weak ETag and `Cache-Control: private,
no-cache`; a matching `If-None-Match` gets 304 with no body. The tag moves with every write a user can
see (create, status update, dispatch outcome, delete) and with nothing else, on every replica."""

from __future__ import annotations

import asyncio

from litestar.testing import AsyncTestClient

from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from decode_userapi.entrypoints.http.jobs import not_modified
from tests.integration.harness import eventually, make_user, outbox_drained, stacks
from tests.integration.test_http_jobs import job_body, put_inputs, status


async def tag_of(client, user, path="/jobs"):
    r = await client.get(path, headers=user.headers)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-cache"
    return r.headers["etag"]


def test_if_none_match_follows_rfc_9110() -> None:
    tag = 'W/"abc"'
    assert not_modified('W/"abc"', tag) and not_modified('"abc"', tag)  # weak comparison
    assert not_modified("*", tag) and not_modified(' * ', tag)
    assert not_modified('"x", W/"abc"', tag) and not_modified('W/"x",W/"abc" ', tag)
    assert not_modified('"a,b", W/"abc"', tag)  # a comma may be inside a tag
    for other in [None, "", '"x"', 'W/"abcd"', "abc", 'W/"abc" junk', '"abc', '"x" "abc"']:
        assert not not_modified(other, tag), other


async def test_answers_carry_an_etag_and_a_matching_one_gets_304(client, alice, bob):
    await put_inputs(client, alice)
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    await outbox_drained(client)  # its dispatch recorded: nothing changes from here on
    for path in ("/jobs", f"/jobs/{job_id}", "/jobs?limit=1&status=queued"):
        tag = await tag_of(client, alice, path)
        assert tag.startswith('W/"') and tag == await tag_of(client, alice, path)  # stable while nothing changes
        for sent in (tag, tag.removeprefix("W/"), f'"other", {tag}', "*"):
            r = await client.get(path, headers=alice.headers | {"If-None-Match": sent})
            assert r.status_code == 304, (path, sent)
            assert r.content == b"" and r.headers["etag"] == tag and r.headers["cache-control"] == "private, no-cache"
        r = await client.get(path, headers=alice.headers | {"If-None-Match": '"other"'})
        assert r.status_code == 200 and r.headers["etag"] == tag and r.json()
    # Each query its own tag; each user theirs.
    tags = {await tag_of(client, alice, p) for p in ("/jobs", "/jobs?limit=1", "/jobs?offset=1", "/jobs?status=running")}
    assert len(tags) == 4
    assert await tag_of(client, bob) != await tag_of(client, alice, "/jobs?status=running")
    # `*` on a job that does not exist: no answer to keep, 404. Bad input is refused before any 304.
    assert (await client.get("/jobs/999999", headers=alice.headers | {"If-None-Match": "*"})).status_code == 404
    assert (await client.get(f"/jobs/{job_id}", headers=bob.headers | {"If-None-Match": "*"})).status_code == 404
    assert (await client.get("/jobs?status=nope", headers=alice.headers | {"If-None-Match": "*"})).status_code == 422


async def test_the_revalidation_in_front_of_the_handlers_answers_as_they_do(client, alice, bob):
    """`revalidation` answers the usual polls before the handler runs; a query parameter nobody reads
    (`_=1`, as cache-busting scripts add) leaves the same request to the handler. Both must answer
    alike, header for header, whatever is sent."""
    await put_inputs(client, alice)
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    await outbox_drained(client)
    carol = await make_user(client, "carol", groups=["others"])  # signed in, not in `users`: 403

    async def both(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        answers = []
        for sent in (path, path + ("&" if "?" in path else "?") + "_=1"):
            r = await client.get(sent, headers=headers)
            answers.append((r.status_code, {k: v for k, v in r.headers.items() if k != "x-request-id"}, r.content))
        assert answers[0] == answers[1], (path, headers)
        return answers[0]

    paths = [
        "/jobs", "/jobs/", "/jobs?limit=1", "/jobs?offset=1&limit=7", "/jobs?status=queued&status=running",
        "/jobs?status=queued,running", "/jobs?name=job&application=decode", "/jobs?application=nothing",
        "/jobs?created_after=2020-01-01T00:00:00Z&created_before=2999-01-01T00:00:00%2B02:00", f"/jobs/{job_id}",
    ]  # fmt: skip
    for path in paths:
        tag = await tag_of(client, alice, path)
        status_code, headers, body = await both(path, alice.headers | {"If-None-Match": tag})
        assert status_code == 304 and body == b"" and headers["etag"] == tag, path
        assert (await both(path, alice.headers | {"If-None-Match": '"other"'}))[0] == 200
        assert (await both(path, bob.headers | {"If-None-Match": tag}))[0] in (200, 404)  # bob's answer, not alice's
        assert (await both(path, {"If-None-Match": tag}))[0] == 401
        assert (await both(path, {"Authorization": "Bearer nonsense", "If-None-Match": tag}))[0] == 401
        assert (await both(path, carol.headers | {"If-None-Match": tag}))[0] == 403
    tag = await tag_of(client, alice)
    for refused in ("/jobs?limit=0", "/jobs?limit=abc", "/jobs?offset=-1", "/jobs?status=nope", "/jobs?created_after=yesterday"):
        assert (await client.get(refused, headers=alice.headers | {"If-None-Match": tag})).status_code == 422, refused
    for same in ("/jobs?name=", "/jobs?limit=100", "/jobs?offset=0&status="):  # read as `/jobs` by the handler
        assert (await client.get(same, headers=alice.headers | {"If-None-Match": tag})).status_code == 304, same
    assert (await both("/jobs/999999", alice.headers | {"If-None-Match": await tag_of(client, alice, f"/jobs/{job_id}")}))[0] == 404


async def test_the_tag_moves_with_each_kind_of_write_and_not_otherwise(client, alice, bob, fake_workerfacing):
    await put_inputs(client, alice)
    await put_inputs(client, bob)
    seen = [await tag_of(client, alice)]

    async def moved():
        tag = await tag_of(client, alice)
        assert tag not in seen
        seen.append(tag)

    async def still():
        assert await tag_of(client, alice) == seen[-1]
        await asyncio.sleep(0)

    fake_workerfacing.mode, fake_workerfacing.delay = "slow", 0.5  # the hand-over takes a while
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    await moved()  # created
    job_tag = await tag_of(client, alice, f"/jobs/{job_id}")
    await eventually(lambda: fake_workerfacing.requests >= 1)
    await still()  # under way: nothing recorded yet
    await outbox_drained(client)
    await moved()  # the dispatch outcome: `dispatch` shows it
    assert await tag_of(client, alice, f"/jobs/{job_id}") != job_tag
    fake_workerfacing.mode = "up"

    assert (await status(client, job_id, "running")).status_code == 200
    await moved()
    assert (await status(client, job_id, "pulled")).json() == "running"  # stale: changes nothing
    await still()
    assert (await status(client, job_id, "running")).status_code == 200  # a keep-alive: nothing either
    await still()
    await client.get("/jobs", headers=alice.headers)
    await client.get(f"/jobs/{job_id}", headers=alice.headers)
    await still()
    assert (await client.post("/jobs", headers=bob.headers, json=job_body())).status_code == 201  # another user's
    await outbox_drained(client)
    await still()
    assert (await client.post("/jobs", headers=alice.headers, json=job_body())).status_code == 409  # refused
    await still()
    assert (await client.delete(f"/jobs/{job_id}", headers=alice.headers)).status_code == 204
    await moved()


@stacks("local-postgres")
async def test_two_app_instances_on_one_database_agree_on_tags(settings, client, alice, fake_workerfacing):
    """Two replicas (two containers, engines and dispatchers) on one PostgreSQL database."""
    async with AsyncTestClient(app=create_app(build_services(settings))) as other:
        await put_inputs(client, alice)
        assert await tag_of(client, alice) == await tag_of(other, alice)
        job_id = (await other.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
        await outbox_drained(client)
        await outbox_drained(other)
        first = await tag_of(client, alice)
        assert first == await tag_of(other, alice)
        r = await client.get("/jobs", headers=alice.headers | {"If-None-Match": first})
        assert r.status_code == 304
        assert (await status(other, job_id, "running")).status_code == 200
        r = await client.get("/jobs", headers=alice.headers | {"If-None-Match": first})
        assert r.status_code == 200 and r.json()[0]["status"] == "running"
        assert r.headers["etag"] == await tag_of(other, alice) != first
        assert await tag_of(client, alice, f"/jobs/{job_id}") == await tag_of(other, alice, f"/jobs/{job_id}")
    await make_user(client, "carol")  # the first instance still serves
