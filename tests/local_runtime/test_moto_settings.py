"""A local runtime turns on moto's real ASL execution and in-process Lambda for its whole process (moto keeps its
settings per process); once the last runtime of the process stops, the settings it found are given back, so the
integration tests' moto server in the same worker answers as it did before (their Step Functions executions are
stopped, not executed). Without it, integration files run after a runtime tier saw executions FAIL."""

from __future__ import annotations

import copy
from pathlib import Path

from moto.core.config import default_user_config

from local_runtime import runtime as runtime_module
from local_runtime.profile import Profile
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from tests.local_runtime.echo_stack import echo_template
from tests.support import free_port


def test_the_last_runtime_to_stop_gives_moto_its_settings_back(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(echo_template(tmp_path / "captured.jsonl"))
    found = copy.deepcopy({key: default_user_config.get(key) for key in ("stepfunctions", "lambda")})
    others_running = bool(runtime_module._LIVE_MOTO_PORTS)  # this tier's shared runtime, when it is up
    config = RuntimeConfig(
        template_path=template,
        profile=Profile(),
        api_port=0,
        moto_port=0,
        stack_name=f"settings-{free_port()}",
        log=lambda _: None,
    )
    running = LocalRuntime(config).start()
    try:
        # While it runs, moto executes state machines (the runtime's Step Functions are real)
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
    finally:
        running.stop()
    after = {key: default_user_config.get(key) for key in ("stepfunctions", "lambda")}
    if others_running:
        # Another runtime of this process still needs them: left on until it stops
        assert after["stepfunctions"] == {"execute_state_machine": True}
    else:
        assert after == found
