"""Typed activity options: the timeout/retry presets workflows spread into
`workflow.execute_activity_method(fn, arg, **PRESET)`, and `retry`, the one way to build a
retry policy (bad input is never retried, whatever else a policy says).

A TypedDict (a plain dict at run time) so a type checker matches each key
against execute_activity_method's keyword parameters.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Sequence, TypedDict

from temporalio.common import RetryPolicy

from stratmaster.errors import NON_RETRYABLE


class ActivityOptions(TypedDict, total=False):
    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy


def retry(attempts: int | None = None, *, first: timedelta = timedelta(seconds=1),
          longest: timedelta | None = None, also: Sequence[str] = ()) -> RetryPolicy:
    """A retry policy: `attempts` in all (None: until the activity's schedule-to-close timeout),
    backing off from `first` doubling up to `longest` (Temporal's default: 100 x first); never
    for bad input (stratmaster.errors.NON_RETRYABLE) or the error types in `also`."""
    return RetryPolicy(initial_interval=first, backoff_coefficient=2.0, maximum_interval=longest,
                       maximum_attempts=attempts or 0, non_retryable_error_types=[*NON_RETRYABLE, *also])
