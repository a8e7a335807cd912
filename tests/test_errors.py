"""Errors: every exception lakeflow raises on purpose is a LakeflowError; a sink's is public."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import lakeflow
from lakeflow.runtime.committer import refused
from lakeflow.sinks.store import StoreError


def lakeflow_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(lakeflow.__path__, "lakeflow."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_exception_class_of_lakeflow_derives_from_lakeflow_error():
    strays = [
        cls.__qualname__
        for cls in lakeflow_exceptions()
        if not issubclass(cls, lakeflow.LakeflowError)
    ]
    assert not strays


@pytest.mark.parametrize(("config", "stops"), [(True, True), (False, False)])
def test_a_sink_error_stops_the_source_only_when_a_person_must_act(config, stops):
    assert refused(lakeflow.SinkError("the bucket is gone", config=config)) is stops


def test_the_delta_sinks_store_error_is_a_public_sink_error():
    assert issubclass(StoreError, lakeflow.SinkError)
