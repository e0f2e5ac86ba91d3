"""A second deploy run changes nothing on any host."""

import pytest

from lab.toolkit.deploy import changed_operations, run_deploy


@pytest.mark.lab
def test_second_deploy_reports_no_changes():
    result = run_deploy("--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert changed_operations(result) == []
