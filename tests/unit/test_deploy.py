"""The shipped deployment files: each Kubernetes manifest against the Kubernetes schema
(`kubernetes-validate`, which carries the schemas: no network), and what each must say."""

from __future__ import annotations

import configparser
import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jobs.commands.daemon import ABANDON_TIMEOUT
from jobs.config.sources import SETTINGS
from jobs.run.schedule import STOP_TIMEOUT

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
KNOWN_ENV = {name for specs in SETTINGS.values() for spec in specs.values() for name in spec.env}
SECRET_ENV = {spec.env[0] for specs in SETTINGS.values() for spec in specs.values()
              if spec.secret} | {"RECONCILER_DATABASE_URL"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())
    return data


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def test_there_are_the_manifests_the_readme_names() -> None:
    assert {m.name for m in MANIFESTS} == {
        "configmap.yaml", "secret.example.yaml", "cronjob-quick.yaml", "cronjob-deep.yaml",
        "cronjob-weekly.yaml", "deployment.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        # strict: an unknown or misspelt field is an error, not silently ignored.
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_the_validator_catches_a_misspelt_field_and_a_wrong_type() -> None:
    broken = copy.deepcopy(load("cronjob-quick.yaml"))
    broken["spec"]["concurrencypolicy"] = broken["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
    wrong = copy.deepcopy(load("deployment.yaml"))
    wrong["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("name", ["cronjob-quick.yaml", "cronjob-deep.yaml",
                                  "cronjob-weekly.yaml"])
def test_cronjobs_never_overlap_and_take_their_secrets_from_the_secret(name: str) -> None:
    job = load(name)
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = pod_spec(job)["containers"]
    assert {"secretRef": {"name": "pass-reconciler"}} in container["envFrom"]
    assert "env" not in container  # no secret written into the manifest itself
    assert container["securityContext"]["readOnlyRootFilesystem"] is True  # no local state
    assert "volumes" not in pod_spec(job)


def test_the_quick_and_deep_cronjobs_run_the_passes() -> None:
    quick, deep = load("cronjob-quick.yaml"), load("cronjob-deep.yaml")
    assert pod_spec(quick)["containers"][0]["args"] == ["run"]
    assert pod_spec(deep)["containers"][0]["args"] == ["run", "--deep"]


def test_the_daemon_deployment_is_a_failover_pair() -> None:
    deployment = load("deployment.yaml")
    assert deployment["spec"]["replicas"] == 2
    (container,) = pod_spec(deployment)["containers"]
    assert container["command"] == ["reconcile", "daemon"]
    assert {"secretRef": {"name": "pass-reconciler"}} in container["envFrom"]
    # The grace period covers the daemon's own stop timeout (25 s) and marking a hung pass (5 s).
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > STOP_TIMEOUT + ABANDON_TIMEOUT


def test_secret_and_configmap_hold_known_settings_and_secrets_only_in_the_secret() -> None:
    secret, config = load("secret.example.yaml"), load("configmap.yaml")
    assert set(secret["stringData"]) <= KNOWN_ENV and set(config["data"]) <= KNOWN_ENV
    assert set(secret["stringData"]) == SECRET_ENV
    assert not set(config["data"]) & SECRET_ENV
    assert secret["stringData"]["STRIPE_SECRET_KEY"].startswith("rk_live_")  # restricted key
    assert secret["stringData"]["RECONCILER_DATABASE_URL"].startswith("postgresql://")


def test_the_two_host_systemd_unit_runs_the_daemon_with_the_shared_ledger() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "pass-reconciler.service")
    service = unit["Service"]
    assert service["ExecStart"].endswith("reconcile daemon")
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"].removesuffix("s")) > STOP_TIMEOUT + ABANDON_TIMEOUT
    assert "StateDirectory" not in service  # nothing kept on the host
    assert "RECONCILER_DATABASE_URL" in (DEPLOY / "systemd" / "pass-reconciler.service").read_text()
