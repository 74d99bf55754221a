"""Typed activity options: the timeout/retry presets workflows spread into
`workflow.execute_activity_method(fn, arg, **PRESET)`.

A TypedDict (a plain dict at run time) so a type checker matches each key
against execute_activity_method's keyword parameters.
"""
from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from temporalio.common import RetryPolicy


class ActivityOptions(TypedDict, total=False):
    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy
