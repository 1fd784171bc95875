"""Written-out constructors make exactly what the attrs classes make, or refuse the class."""

from __future__ import annotations

import attrs
import pytest

from hodei_core import Job, JobSpec, WorkerView
from hodei_core._fast import constructor
from hodei_core.events import JobAssigned, JobFinished, JobStarted, JobSubmitted


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (JobSubmitted, ("j1", "t1")),
        (JobAssigned, ("j1", "t1", 2, "w1")),
        (JobStarted, ("j1", "t1", 2, "w1")),
        (JobFinished, (Job(id="j1", spec=JobSpec(command=["true"])),)),
    ],
)
def test_a_constructor_makes_what_the_class_makes(cls: type, values: tuple[object, ...]) -> None:
    made = constructor(cls)(*values)
    expected = cls(*values)
    assert type(made) is cls and made == expected
    assert made.topic == expected.topic
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.job_id = "other"  # still frozen


@pytest.mark.parametrize(
    ("cls", "complaint"),
    [
        (WorkerView, "not plain"),  # derives fields after __init__
        (JobSpec, "not plain"),  # converts its fields
        (dict, "not a slotted attrs class"),
    ],
)
def test_a_class_that_does_more_than_set_its_fields_is_refused(cls: type, complaint: str) -> None:
    with pytest.raises(TypeError, match=complaint):
        constructor(cls)
