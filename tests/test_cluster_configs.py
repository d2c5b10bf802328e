"""The launch targets under cluster/ are valid for the versions they name.

- Ray cluster launcher YAML (aws.yaml, gcp.yaml): Ray's own `prepare_config` + `validate_config` (the JSON schema
  ray/autoscaler/ray-schema.json shipped with the installed Ray, plus its cross-field checks), then our
  consistency rules (CPU-only head, autoscaling GPU worker types, resources that match the instance types).
- KubeRay manifests (cluster/kuberay/): every object checked against the field whitelist of KubeRay v1.5.1 /
  Kubernetes v1.31 in tests/data/k8s_fields.yaml (unknown fields rejected, required present, enums), then the
  cross-references a cluster would only reveal at run time (entrypoint, config file, runtime_env, volumes, RBAC).
- cluster/local_box.sh: shell syntax, and the `ray start` line it builds from the GPUs nvidia-smi reports.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
FIELDS = yaml.safe_load((Path(__file__).parent / "data" / "k8s_fields.yaml").read_text())
IMAGE_ROOT = "/home/ray/ie-ray"  # WORKDIR of cluster/Dockerfile: where the repository lives in the pods
SHARED = "/mnt/shared"
# GPUs per instance type of the launcher configs (AWS and GCP instance type documentation)
INSTANCE_GPUS = {"m6i.2xlarge": 0, "m6i.4xlarge": 0, "g5.2xlarge": 1, "p5.48xlarge": 8,
                 "n2-standard-8": 0, "n2-standard-16": 0, "g2-standard-8": 1, "a3-highgpu-8g": 8}


# ---------------------------------------------------------------------------------------------------------
# A small structural validator over the whitelist
# ---------------------------------------------------------------------------------------------------------


def _check(value, type_expr: str, path: str, errors: list[str]) -> None:
    """Append to `errors` every way `value` breaks `type_expr` (see the header of k8s_fields.yaml)."""
    if type_expr.startswith("list<"):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, type_expr[5:-1], f"{path}[{i}]", errors)
    elif type_expr == "map" or type_expr.startswith("map<"):
        inner = type_expr[4:-1] if type_expr.startswith("map<") else "string"
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            _check(item, inner, f"{path}.{key}", errors)
    elif type_expr.startswith("enum("):
        allowed = type_expr[5:-1].split("|")
        if value not in allowed:
            errors.append(f"{path}: {value!r} is not one of {allowed}")
    elif type_expr in ("string", "integer", "number", "boolean", "quantity", "object"):
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "quantity": isinstance(value, (str, int, float)) and not isinstance(value, bool),
            "object": isinstance(value, dict),
        }[type_expr]
        if not ok:
            errors.append(f"{path}: expected {type_expr}, got {type(value).__name__} {value!r}")
    else:
        spec = FIELDS["types"][type_expr]
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a {type_expr} mapping, got {type(value).__name__}")
            return
        for key in spec["required"]:
            if key not in value:
                errors.append(f"{path}: required field {key!r} of {type_expr} is missing")
        for key, item in value.items():
            if key not in spec["fields"]:
                errors.append(f"{path}.{key}: unknown field of {type_expr}")
            else:
                _check(item, spec["fields"][key], f"{path}.{key}", errors)


def validate_object(obj: dict, where: str) -> list[str]:
    kind_key = f"{obj.get('apiVersion')}/{obj.get('kind')}"
    if kind_key not in FIELDS["kinds"]:
        return [f"{where}: {kind_key} is not a kind the whitelist knows"]
    errors: list[str] = []
    _check(obj, FIELDS["kinds"][kind_key], where, errors)
    return errors


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _by_kind(kind: str) -> list[dict]:
    return [d for p in sorted(KUBERAY.glob("*.yaml")) for d in _docs(p) if d.get("kind") == kind]


@pytest.fixture(scope="module")
def rayjob() -> dict:
    (job,) = _docs(KUBERAY / "rayjob.yaml")
    return job


# ---------------------------------------------------------------------------------------------------------
# Ray cluster launcher (AWS, GCP)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_passes_rays_own_validation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER / name).read_text())
    validate_config(raw)  # the file as written
    validate_config(prepare_config(raw))  # and after Ray merged in its provider defaults, as `ray up` does


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_has_a_cpu_head_and_autoscaling_gpu_workers(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU") == 0
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    gpu_types = [k for k, v in workers.items() if v["resources"].get("GPU", 0) > 0]
    assert len(gpu_types) >= 2, "one small-GPU type and one multi-GPU type (models split over GPUs)"
    assert max(workers[k]["resources"]["GPU"] for k in gpu_types) >= 4  # a 70B bf16 model needs 4 x 80 GB
    for key, node in workers.items():
        assert node["min_workers"] == 0 < node["max_workers"], f"{key} must scale from zero"
        instance = node["node_config"].get("InstanceType") or node["node_config"].get("machineType")
        assert node["resources"].get("GPU", 0) == INSTANCE_GPUS[instance], f"{key}: {instance}"
    assert sum(v["max_workers"] for v in workers.values()) <= config["max_workers"]


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_shares_storage_spills_to_disk_and_pins_ray(name):
    import ray

    config = yaml.safe_load((CLUSTER / name).read_text())
    setup = " ".join(config["setup_commands"])
    assert f"mount" in setup and SHARED in setup  # run directory and cache visible from every node
    assert f'"ray[default,data]=={ray.__version__}"' in setup  # the Ray version these tests validated against
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(config[key])
        assert "--object-spilling-directory=" in start and "RAY_AUTH_MODE=token" in start
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


# ---------------------------------------------------------------------------------------------------------
# KubeRay
# ---------------------------------------------------------------------------------------------------------


def test_every_kuberay_manifest_matches_the_pinned_api_fields():
    errors = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        for i, doc in enumerate(_docs(path)):
            errors += validate_object(doc, f"{path.name}[{i}]")
    assert not errors, "\n".join(errors)


def test_the_validator_rejects_unknown_and_missing_fields(rayjob):
    import copy

    scheduled = copy.deepcopy(rayjob)
    scheduled["spec"]["schedule"] = "0 3 * * 1"  # not a RayJob field in KubeRay v1.5.1
    assert any("spec.schedule: unknown field" in e for e in validate_object(scheduled, "rayjob"))
    headless = copy.deepcopy(rayjob)
    del headless["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert any("headGroupSpec" in e and "missing" in e for e in validate_object(headless, "rayjob"))
    typo = copy.deepcopy(rayjob)
    typo["spec"]["submissionMode"] = "K8sJob"
    assert any("submissionMode" in e for e in validate_object(typo, "rayjob"))
    numeric = copy.deepcopy(rayjob)
    numeric["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    assert any("num-cpus" in e for e in validate_object(numeric, "rayjob"))


def test_manifests_name_the_versions_they_are_checked_against(rayjob):
    import ray

    header = (KUBERAY / "rayjob.yaml").read_text().split("apiVersion")[0]
    assert f"KubeRay v{FIELDS['versions']['kuberay']}" in header
    assert rayjob["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__
    assert f"rayproject/ray:{ray.__version__}-py311-gpu" in (CLUSTER / "Dockerfile").read_text()


def test_rayjob_entrypoint_runs_the_sweep_with_an_existing_config(rayjob):
    from ie_ray.config import load_config

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[0] == "python" and argv[1] == f"{IMAGE_ROOT}/jobs/sweep.py"
    assert (REPO / Path(argv[1]).relative_to(IMAGE_ROOT)).is_file()
    config_path = REPO / Path(argv[argv.index("--config") + 1]).relative_to(IMAGE_ROOT)
    load_config(config_path)  # exists and is a valid sweep config
    assert argv[argv.index("--out") + 1].startswith(f"{SHARED}/")  # results survive the cluster
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert "WORKDIR " + IMAGE_ROOT in dockerfile
    copied = [src for line in dockerfile.splitlines() if line.startswith("COPY ")
              for src in line.split()[1:-1] if not src.startswith("--")]
    assert {"ie_ray", "jobs"} <= set(copied) and all((REPO / c).exists() for c in copied)


def test_runtime_envs_parse_and_agree(rayjob):
    from ray.runtime_env import RuntimeEnv

    embedded = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    launcher = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    RuntimeEnv(**embedded)  # Ray accepts both
    RuntimeEnv(**launcher)
    assert embedded["env_vars"] == launcher["env_vars"]
    assert all(isinstance(v, str) for v in embedded["env_vars"].values())
    assert embedded["env_vars"]["IE_RAY_CACHE_DIR"].startswith(f"{SHARED}/")
    assert float(embedded["env_vars"]["IE_RAY_GPU_MEMORY_GB"]) > 0


def test_rayjob_cluster_has_a_cpu_head_autoscaling_gpu_workers_and_shared_volumes(rayjob):
    cluster = rayjob["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True and cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert all("nvidia.com/gpu" not in c["resources"].get("limits", {}) for c in head["template"]["spec"]["containers"])
    gpu_groups = [g for g in cluster["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])]
    assert gpu_groups and all(g["minReplicas"] == 0 < g["maxReplicas"] for g in gpu_groups)
    (claim,) = _by_kind("PersistentVolumeClaim")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for group in [head, *cluster["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "object-spilling-directory" in group["rayStartParams"]
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert volumes[mounts[SHARED]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
            spill = group["rayStartParams"]["object-spilling-directory"]
            assert "emptyDir" in volumes[mounts[spill]]


def test_the_schedule_creates_the_rayjob_with_just_enough_rights():
    (cron,) = _by_kind("CronJob")
    (role,) = _by_kind("Role")
    (binding,) = _by_kind("RoleBinding")
    (account,) = _by_kind("ServiceAccount")
    fields = cron["spec"]["schedule"].split()
    assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    (rule,) = role["rules"]
    assert rule["apiGroups"] == ["ray.io"] and rule["resources"] == ["rayjobs"] and "create" in rule["verbs"]
    # the pod creates the RayJob from the ConfigMap that kustomize generates from rayjob.yaml
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["rayjob.yaml"] and kustomization["generatorOptions"]["disableNameSuffixHash"]
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == generator["name"]
    (container,) = pod["containers"]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[volume["name"]]
    script = " ".join(container["args"])
    assert f"kubectl create -f {mount}/rayjob.yaml" in script
    assert {f"{r}.yaml" for r in ("namespace", "pvc", "schedule")} == set(kustomization["resources"])
    assert all((KUBERAY / r).is_file() for r in kustomization["resources"])
    # `kubectl create` of a scheduled RayJob needs generateName (a fixed name collides on the second run)
    (job,) = _docs(KUBERAY / "rayjob.yaml")
    assert "generateName" in job["metadata"] and "name" not in job["metadata"]
    namespaces = {d["metadata"].get("namespace") for p in KUBERAY.glob("*.yaml") for d in _docs(p)
                  if d.get("kind") not in ("Namespace", "Kustomization")}
    assert namespaces == {kustomization["namespace"]}


# ---------------------------------------------------------------------------------------------------------
# Local multi-GPU box
# ---------------------------------------------------------------------------------------------------------


def test_local_box_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(CLUSTER / "local_box.sh")], check=True)


@pytest.mark.parametrize("gpus", [0, 2])
def test_local_box_passes_the_gpus_nvidia_smi_reports(tmp_path, gpus):
    fake = tmp_path / "bin"
    fake.mkdir()
    if gpus:
        smi = fake / "nvidia-smi"
        rows = "\n".join(f"{i}, NVIDIA H100 80GB HBM3, 81559" for i in range(gpus))
        smi.write_text(f"#!/bin/sh\nprintf '%s\\n' '{rows}'\n")
        smi.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:/usr/bin:/bin", IE_RAY_DRY_RUN="1")
    out = subprocess.run(["bash", str(CLUSTER / "local_box.sh"), "jobs/configs/smoke.yaml", str(tmp_path / "run")],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    start = next(line for line in out.splitlines() if line.startswith("ray start"))
    assert f"--num-gpus={gpus}" in start
    if gpus:
        assert "IE_RAY_GPU_MEMORY_GB=79" in out  # 81559 MiB, rounded down
    assert any(line.startswith("ray job submit") and "jobs/sweep.py" in line for line in out.splitlines())
