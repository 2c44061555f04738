"""docker-compose.yml is valid (the compose tool parses and interpolates it) and says what we mean."""

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def test_compose_config_validates():
    env = {**os.environ, "REKD_API_TOKEN": "test-token"}
    out = subprocess.run(_compose() + ["-f", str(ROOT / "docker-compose.yml"), "config"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    services = cfg["services"]
    assert {"redis", "api", "worker"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    # the GPU worker consumes the `gpu` queue a sweep routes big runs to (teacher_queue: gpu)
    assert services["worker"]["command"] == ["rekd", "worker", "--queues", "rekd,gpu"]
    for name in ("api", "worker"):
        env_ = services[name]["environment"]
        assert env_["REKD_REDIS_URL"] == "redis://redis:6379/0" and env_["REKD_API_TOKEN"] == "test-token"
        assert any("/runs" in str(v) for v in services[name]["volumes"])


def test_compose_monitor_profile_runs_flower_on_loopback():
    env = {**os.environ, "REKD_API_TOKEN": "test-token"}
    out = subprocess.run(_compose() + ["-f", str(ROOT / "docker-compose.yml"), "--profile", "monitor", "config"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    flower = yaml.safe_load(out.stdout)["services"]["flower"]
    assert flower["command"][:4] == ["celery", "-A", "worker.app", "flower"]
    assert flower["environment"]["REKD_REDIS_URL"] == "redis://redis:6379/0"
    # compose versions print a port as "127.0.0.1:5555:5555" or as {host_ip: 127.0.0.1, ...}
    hosts = [p["host_ip"] if isinstance(p, dict) else str(p).split(":")[0] for p in flower["ports"]]
    assert hosts == ["127.0.0.1"]


def test_compose_refuses_to_start_without_a_token():
    env = {k: v for k, v in os.environ.items() if k != "REKD_API_TOKEN"}
    out = subprocess.run(_compose() + ["-f", str(ROOT / "docker-compose.yml"), "config", "-q"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "REKD_API_TOKEN" in (out.stderr + out.stdout)
