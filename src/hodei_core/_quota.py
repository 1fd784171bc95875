"""QuotaManager: admits or refuses a tenant's submission."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._models import TenantQuota, TenantUsage
from .errors import QuotaExceeded
from .ports import RATE_WINDOW_S

__all__ = ["QuotaManager"]

# There is no telling when a queued job will leave the queue; this is a polite first guess.
_QUEUE_FULL_RETRY_S = 5.0


class QuotaManager:
    """Holds each tenant's quota and turns it into an admission check for the store.

    ``max_queued`` and ``submit_rate`` refuse submissions (``QuotaExceeded``); ``max_running``
    does not: jobs past it wait in the queue, and the scheduler holds them back.
    """

    def __init__(
        self, quotas: Mapping[str, TenantQuota] | None = None, default: TenantQuota | None = None
    ) -> None:
        self._quotas = dict(quotas or {})
        self._default = default or TenantQuota()

    def quota(self, tenant: str) -> TenantQuota:
        """The quota that applies to ``tenant``."""
        return self._quotas.get(tenant, self._default)

    def set_quota(self, tenant: str, quota: TenantQuota) -> None:
        """Give ``tenant`` its own quota from now on."""
        self._quotas[tenant] = quota

    @property
    def limits_running(self) -> bool:
        """Whether any tenant has a ``max_running``, so the scheduler must count."""
        return self._default.max_running is not None or any(
            q.max_running is not None for q in self._quotas.values()
        )

    def admission(self, tenant: str, now: float) -> Callable[[TenantUsage], None] | None:
        """A check for the store to run on the tenant's usage, or None when unlimited."""
        quota = self.quota(tenant)
        if quota.max_queued is None and quota.submit_rate is None:
            return None

        def admit(usage: TenantUsage) -> None:
            self.check(tenant, quota, usage, now)

        return admit

    @staticmethod
    def check(tenant: str, quota: TenantQuota, usage: TenantUsage, now: float) -> None:
        """Refuse if ``usage`` leaves no room under ``quota``.

        Raises:
            QuotaExceeded: with the time after which trying again may succeed.
        """
        if quota.max_queued is not None and usage.queued >= quota.max_queued:
            raise QuotaExceeded(
                tenant, f"{usage.queued} jobs queued (max {quota.max_queued})", _QUEUE_FULL_RETRY_S
            )
        if quota.submit_rate is not None:
            recent = [t for t in usage.recent_submissions if t > now - RATE_WINDOW_S]
            if len(recent) >= quota.submit_rate:
                # the oldest submission that must leave the window before one more fits
                oldest = sorted(recent)[len(recent) - quota.submit_rate]
                retry = max(oldest + RATE_WINDOW_S - now, 0.001)
                raise QuotaExceeded(
                    tenant, f"more than {quota.submit_rate} submissions per minute", retry
                )
