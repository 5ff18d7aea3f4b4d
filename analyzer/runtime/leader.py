"""Leader election on a coordination.k8s.io/v1 Lease, so that two replicas never both act.

The client-go algorithm: the holder renews ``renewTime`` every ``retry_period``; another
replica takes the lease over only when it has not been renewed for ``lease_duration``. A leader
counts as leader only while its last successful renewal is younger than ``renew_deadline``
(< lease_duration): a leader cut off from the API server stops writing before anybody else can
take over. Conflicting writes (409) mean someone else moved first: not leader this round.

Must not: write anything but the Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

log = structlog.get_logger("analyzer.leader")
LEASE_TIMEOUT = 5.0
"""Seconds one Lease request may take: under the renew deadline, so a hung API server makes
the leader step down in time instead of leaving the elector blocked."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    renew_time: float | None
    lease_duration: float
    transitions: int
    version: str | None = None


class LeaseConflict(Exception):
    """Someone else wrote the Lease first."""


class LeaseStore(Protocol):
    async def get(self) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord) -> LeaseRecord: ...

    async def replace(self, record: LeaseRecord) -> LeaseRecord: ...


def _micro(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class KubeLeaseStore:
    def __init__(self, api: client.ApiClient, name: str, namespace: str) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.name = name
        self.namespace = namespace

    @staticmethod
    def _record(lease: client.V1Lease) -> LeaseRecord:
        spec = lease.spec
        renew = spec.renew_time.timestamp() if spec.renew_time else None
        return LeaseRecord(
            holder=spec.holder_identity,
            renew_time=renew,
            lease_duration=float(spec.lease_duration_seconds or 15),
            transitions=int(spec.lease_transitions or 0),
            version=lease.metadata.resource_version,
        )

    def _body(self, r: LeaseRecord) -> client.V1Lease:
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, resource_version=r.version
            ),
            spec=client.V1LeaseSpec(
                holder_identity=r.holder,
                lease_duration_seconds=int(r.lease_duration),
                renew_time=_micro(r.renew_time) if r.renew_time else None,
                lease_transitions=r.transitions,
            ),
        )

    async def get(self) -> LeaseRecord | None:
        try:
            lease = await self.coordination.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=LEASE_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._record(lease)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        try:
            lease = await self.coordination.create_namespaced_lease(
                self.namespace, self._body(record), _request_timeout=LEASE_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict from None
            raise
        return self._record(lease)

    async def replace(self, record: LeaseRecord) -> LeaseRecord:
        try:
            lease = await self.coordination.replace_namespaced_lease(
                self.name, self.namespace, self._body(record), _request_timeout=LEASE_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict from None
            raise
        return self._record(lease)


class LeaderElector:
    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float],
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.store = store
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self._renewed_at: float | None = None

    def is_leader(self) -> bool:
        """Only while the last renewal is fresh: a partitioned leader steps down first."""
        return (
            self._renewed_at is not None and self.clock() - self._renewed_at < self.renew_deadline
        )

    async def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        try:
            current = await self.store.get()
            mine = LeaseRecord(self.identity, now, self.lease_duration, 0)
            if current is None:
                await self.store.create(mine)
            elif current.holder == self.identity:
                await self.store.replace(
                    LeaseRecord(
                        self.identity,
                        now,
                        self.lease_duration,
                        current.transitions,
                        current.version,
                    )
                )
            elif (
                current.holder
                and current.renew_time is not None
                and now < current.renew_time + current.lease_duration
            ):
                return self.is_leader()  # someone else holds a live lease
            else:
                await self.store.replace(
                    LeaseRecord(
                        self.identity,
                        now,
                        self.lease_duration,
                        current.transitions + 1,
                        current.version,
                    )
                )
                log.info("leader_acquired", identity=self.identity, previous=current.holder)
        except (LeaseConflict, ApiException, OSError, aiohttp.ClientError) as exc:
            log.warning("lease_update_failed", identity=self.identity, error=type(exc).__name__)
            return self.is_leader()
        self._renewed_at = now
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.try_acquire_or_renew()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_period)
