"""deploy/kubernetes/ agrees with the code it runs: the manifests parse; the worker's, the
probe's and the caller's command lines parse with the real parsers; the bound port is the
container's and the Service's; the DNS name is the Service's SRV name; the key directory is
where the init container puts the Secret, with modes `Keys.load` accepts (checked by running
that init command, as the pod's uid, on a mount laid out as Kubernetes lays out a Secret);
`kubectl kustomize` renders it (when kubectl is installed); and the caller script works
against real workers found through a real DNS server (when dnsmasq is installed)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dnsmasq
import pytest
import yaml
from helpers import REPO, CliWorker

import wool
from wool._keys import PUBLIC_FILE, SECRET_FILE, generate_directory
from wool.discovery import DnsDiscovery, parse_discovery
from wool.ping import build_parser as ping_parser
from wool.worker.__main__ import build_parser as worker_parser
from wool.worker._config import WorkerConfig

DEPLOY = REPO / "deploy" / "kubernetes"


def manifests() -> dict[str, dict[str, Any]]:
    """Every YAML document under deploy/kubernetes, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and "kind" in doc, f"{path.name}: not a Kubernetes object"
            assert doc["kind"] not in found, f"two {doc['kind']}s"
            found[doc["kind"]] = {**doc, "_file": path.name}
    return found


def caller_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_caller", DEPLOY / "caller.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pod(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifests()[kind]["spec"]["template"]["spec"]
    return spec


def mount(container: dict[str, Any], volume: str) -> str:
    return str(next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume))


def worker_args() -> Any:
    (container,) = pod("Deployment")["containers"]
    argv = container["args"]
    assert argv[:3] == ["python", "-m", "wool.worker"]
    return worker_parser().parse_args(argv[3:])


def test_manifests_parse_and_refer_to_each_other() -> None:
    docs = manifests()
    assert set(docs) == {"Kustomization", "Namespace", "Service", "Deployment", "Job"}
    kustomization = docs["Kustomization"]
    assert sorted(kustomization["resources"]) == sorted(d["_file"] for k, d in docs.items() if k != "Kustomization")
    namespace = docs["Namespace"]["metadata"]["name"]
    assert kustomization["namespace"] == namespace
    for kind in ("Service", "Deployment", "Job"):
        assert docs[kind]["metadata"]["namespace"] == namespace, kind
    service, deployment = docs["Service"], docs["Deployment"]
    assert service["spec"]["clusterIP"] == "None"  # headless: DNS lists the pods themselves
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"].items() <= labels.items()


def test_worker_command_agrees_with_the_cli_and_the_service() -> None:
    docs = manifests()
    args = worker_args()
    (container,) = pod("Deployment")["containers"]
    (service_port,) = docs["Service"]["spec"]["ports"]
    (container_port,) = container["ports"]
    bound = int(args.bind.rpartition(":")[2])
    assert bound == container_port["containerPort"] == service_port["port"]
    assert service_port["targetPort"] == container_port["name"]
    assert service_port["protocol"] == container_port["protocol"] == "TCP"

    # The name is the SRV record Kubernetes makes for the Service's named port.
    discovery = parse_discovery(args.discovery)
    assert isinstance(discovery, DnsDiscovery) and discovery.port is None and discovery.nameservers is None
    namespace, service = docs["Namespace"]["metadata"]["name"], docs["Service"]["metadata"]["name"]
    assert discovery.name == f"_{service_port['name']}._tcp.{service}.{namespace}.svc.cluster.local"

    # The worker would start with these options: keys in the copied directory, a bind it accepts with keys.
    assert args.keys == mount(container, "keys") + "/keys" and not args.insecure
    WorkerConfig(discovery, args.bind, grace=args.grace, keys=wool.Keys.generate())
    assert pod("Deployment")["terminationGracePeriodSeconds"] > args.grace

    # The readiness probe pings this very worker, with the same keys.
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:3] == ["python", "-m", "wool.ping"]
    ping = ping_parser().parse_args(probe[3:])
    assert ping.endpoint == f"tcp://127.0.0.1:{bound}" and ping.keys == args.keys
    assert ping.timeout < container["readinessProbe"]["timeoutSeconds"]


def test_caller_job_agrees_with_the_workers() -> None:
    docs = manifests()
    job = docs["Job"]["spec"]
    (container,) = pod("Job")["containers"]
    assert container["args"][:2] == ["python", "/app/caller.py"]
    args = caller_module().build_parser().parse_args(container["args"][2:])
    workers = worker_args()
    assert args.discovery == workers.discovery and args.keys == workers.keys
    assert args.keys == mount(container, "keys") + "/keys"
    assert args.workers == docs["Deployment"]["spec"]["replicas"]
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"  # at most once
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^COPY deploy/kubernetes/caller\.py /app/caller\.py$", dockerfile, re.MULTILINE)
    assert not re.search(r"^COPY \.", dockerfile, re.MULTILINE), "the image must not take deploy/kubernetes/keys in"
    assert f"USER {pod('Job')['securityContext']['runAsUser']}" in dockerfile


def test_both_pods_get_their_keys_the_same_way() -> None:
    docs = manifests()
    (generated,) = docs["Kustomization"]["secretGenerator"]
    assert sorted(f.partition("=")[0] for f in generated["files"]) == sorted([SECRET_FILE, PUBLIC_FILE])
    for kind in ("Deployment", "Job"):
        spec = pod(kind)
        context = spec["securityContext"]
        assert context["runAsNonRoot"] and context["runAsUser"] != 0 and context["fsGroup"] == context["runAsGroup"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["secret"]["secret"]["secretName"] == generated["name"]
        assert volumes["secret"]["secret"]["defaultMode"] == 0o440  # readable through fsGroup only
        assert volumes["keys"]["emptyDir"]["medium"] == "Memory"  # the key never reaches the node's disk
        (init,) = spec["initContainers"]
        assert init == pod("Deployment")["initContainers"][0]


@pytest.fixture
def pod_root() -> Iterator[Path]:
    """A directory every uid can traverse, removed afterwards (the test's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="wool-k8s-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def secret_mount(root: Path, keys: Path, gid: int) -> Path:
    """A Secret volume as the kubelet lays it out: a root-owned 1777 directory whose entries
    are symlinks into a timestamped directory of root:fsGroup files with the defaultMode."""
    mount = root / "secret"
    data = mount / "..2026_01_01_00_00_00.000000001"
    data.mkdir(parents=True)
    for name in (SECRET_FILE, PUBLIC_FILE):
        shutil.copy(keys / name, data / name)
        os.chown(data / name, 0, gid)
        os.chmod(data / name, 0o440)
        (mount / name).symlink_to(Path("..data") / name)
    (mount / "..data").symlink_to(data.name)
    os.chmod(mount, 0o1777)
    return mount


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as the pod's uid")
def test_init_container_makes_a_key_directory_keys_load_accepts(tmp_path: Path, pod_root: Path) -> None:
    spec = pod("Deployment")
    context = spec["securityContext"]
    uid, gid = context["runAsUser"], context["fsGroup"]
    (init,) = spec["initContainers"]
    generate_directory(tmp_path / "keys")
    secret = secret_mount(pod_root, tmp_path / "keys", gid)
    run = pod_root / "run"
    run.mkdir()
    os.chown(run, 0, gid)
    os.chmod(run, 0o2777)  # an emptyDir with fsGroup
    with pytest.raises((ValueError, OSError)):
        wool.Keys.load(secret)  # the Secret as mounted will not do (a group-readable id.key)

    command = init["command"]
    assert command[:2] == ["sh", "-c"]
    script = command[2].replace(mount(init, "secret"), str(secret)).replace(mount(init, "keys"), str(run))
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={gid}", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr

    keys = Path(str(worker_args().keys).replace(mount(spec["containers"][0], "keys"), str(run)))
    directory, secret_key = os.lstat(keys), os.lstat(keys / SECRET_FILE)
    assert stat.S_ISDIR(directory.st_mode) and stat.S_IMODE(directory.st_mode) & 0o777 == 0o700
    assert stat.S_ISREG(secret_key.st_mode) and stat.S_IMODE(secret_key.st_mode) == 0o600  # a file, not a link
    assert directory.st_uid == secret_key.st_uid == uid  # owned by the user the worker runs as
    # Keys.load as that owner (here root: the pod's uid cannot run this test's Python).
    for path in (keys, keys / SECRET_FILE, keys / PUBLIC_FILE):
        os.chown(path, os.geteuid(), os.getegid())
    assert wool.Keys.load(keys) == wool.Keys.load(tmp_path / "keys")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_with_a_generated_keypair(tmp_path: Path) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY, copy)
    generate_directory(copy / "keys")
    done = subprocess.run(["kubectl", "kustomize", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = {d["kind"]: d for d in yaml.safe_load_all(done.stdout)}
    assert set(rendered) == {"Namespace", "Secret", "Service", "Deployment", "Job"}
    assert sorted(rendered["Secret"]["data"]) == sorted([SECRET_FILE, PUBLIC_FILE])
    assert {d["metadata"].get("namespace") for k, d in rendered.items() if k != "Namespace"} == {"wool"}


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_the_caller_script_fans_out_to_workers_found_through_dns(tmp_path: Path) -> None:
    reason = dnsmasq.unavailable()
    if reason is not None:
        pytest.skip(reason)
    keys = tmp_path / "keys"
    generate_directory(keys)
    srv = f"_wool._tcp.wool-workers.{dnsmasq.DOMAIN}"
    server = await dnsmasq.Dnsmasq(tmp_path / "dns").start()
    try:
        spec = f"dns:{srv}@{server.nameserver}"
        ports = [dnsmasq.free_port(), dnsmasq.free_port()]
        async with (
            CliWorker("--bind", f"tcp://127.0.0.1:{ports[0]}", "--keys", str(keys), "--discovery", spec),
            CliWorker("--bind", f"tcp://127.0.0.1:{ports[1]}", "--keys", str(keys), "--discovery", spec),
        ):
            await server.set_hosts({f"pod.{dnsmasq.DOMAIN}": ["127.0.0.1"]})
            await server.restart([(srv, f"pod.{dnsmasq.DOMAIN}", port) for port in ports])
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(DEPLOY / "caller.py"), "--discovery", spec, "--keys", str(keys),
                "--workers", "2", "--calls", "20", "--timeout", "20",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=dict(os.environ, PYTHONPATH=str(REPO)),
            )  # fmt: skip
            try:
                out, err = await asyncio.wait_for(proc.communicate(), 40)
            finally:
                if proc.returncode is None:  # timed out: leave no caller behind
                    proc.kill()
                    await proc.wait()
    finally:
        await server.close()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("2 workers: ")
    counts = [int(line.rpartition(": ")[2].split()[0]) for line in lines[1:]]
    assert sum(counts) == 20
