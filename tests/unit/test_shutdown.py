"""Issue 11: shutting down closes every adapter even when one fails to close, then says so."""

from __future__ import annotations

import pytest
from dependency_injector import providers

from decode_userapi.container import LIFECYCLE, in_memory_services, start_services, stop_services


class Recorder:
    def __init__(self, name: str, closed: list[str], fail_close: bool = False, fail_start: bool = False) -> None:
        self.name, self.closed, self.fail_close, self.fail_start = name, closed, fail_close, fail_start

    def listen(self, on_change, on_reset) -> None:  # as the change feed does: the live streams attach
        pass

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def aclose(self) -> None:
        self.closed.append(self.name)
        if self.fail_close:
            raise RuntimeError(f"{self.name} cannot close")


def with_recorders(closed: list[str], **behaviour: dict[str, bool]):
    services = in_memory_services(background_dispatch=False)
    for name in LIFECYCLE:
        getattr(services.adapters, name).override(providers.Object(Recorder(name, closed, **behaviour.get(name, {}))))
    return services


async def test_every_adapter_is_closed_when_one_fails_to_close() -> None:
    closed: list[str] = []
    services = with_recorders(closed, file_storage={"fail_close": True}, catalog={"fail_close": True})
    await start_services(services)
    with pytest.raises(RuntimeError, match="catalog cannot close"):  # the first failure, in close order
        await stop_services(services)
    assert closed == list(reversed(LIFECYCLE))


async def test_a_dispatcher_that_fails_to_stop_does_not_keep_adapters_open() -> None:
    closed: list[str] = []
    services = with_recorders(closed)
    await start_services(services)

    class Stuck:
        async def aclose(self) -> None:
            raise RuntimeError("dispatcher cannot stop")

    with services.dispatcher.override(providers.Object(Stuck())), pytest.raises(RuntimeError, match="dispatcher cannot stop"):
        await stop_services(services)
    assert closed == list(reversed(LIFECYCLE))


async def test_a_failed_start_closes_what_started_even_if_closing_fails() -> None:
    closed: list[str] = []
    services = with_recorders(
        closed, job_store={"fail_close": True}, identity={"fail_start": True}
    )
    with pytest.raises(RuntimeError, match="identity cannot start"):
        await start_services(services)
    started = LIFECYCLE[: LIFECYCLE.index("identity")]
    assert closed == list(reversed(started))
