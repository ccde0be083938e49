"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (a fake kubelet), from the binaries that `scripts/k8s-testenv build`
puts in its cache (`scripts/k8s-testenv path` prints the bin dir).

Everything listens on 127.0.0.1 only, on free ports. `ControlPlane(bin_dir, work_dir).start()`
writes, under work_dir: a CA and serving/client certificates (`pki/`), a service-account key,
an admin kubeconfig (`kubeconfig`, client certificate of `admin` in `system:masters`), the
etcd data dir, kwok's configuration, and one log per process (`logs/<name>.log`, kept after
stop). It waits until the namespace `default` and its service account exist, the fake node
`kwok-node-0` is Ready and the Gateway API standard CRDs are Established. `stop()` ends each
process it started, by PID (`devstack.supervisor.stop_processes`): SIGTERM, then SIGKILL
after a grace period.

There is no container runtime: kwok plays the kubelet of one node, `kwok-node-0` (no taints,
so any pod schedules on it). Pods scheduled there go through kwok's default "fast" stages,
the ones kwokctl uses: they become Running and Ready at once, and are deleted at once when
deleted. The real kube-controller-manager and kube-scheduler do the rest (ReplicaSets, rollout,
`availableReplicas`, progress deadlines, EndpointSlices).

Bad-image convention: a pod any of whose containers' image contains the string
``never-ready`` (`NEVER_READY`), e.g. ``127.0.0.1:5000/shop/orders-never-ready@sha256:...``
or ``.../orders:never-ready``, never becomes Ready. kwok's pod-ready stage is given one more
selector (``.spec.containers.[].image | contains("never-ready")`` NotIn ``true``) and an extra
stage, ``pod-never-ready``, selects exactly those pods and gives them what a kubelet reports
for an image it cannot pull: phase Pending, Ready/ContainersReady False (ContainersNotReady),
each container waiting with reason ``ImagePullBackOff``. A Deployment with such an image thus
never gets available replicas and, after its ``progressDeadlineSeconds``, the controller
manager sets its condition Progressing=False, reason ProgressDeadlineExceeded.

A Job's pod goes Running, then Succeeded with exit code 0 (kwok's pod-complete stage), unless
one of its images contains ``fails-tests`` (`FAILS_TESTS`): then a ``pod-fail`` stage ends it
Failed with exit code 1, as tests that failed would. No pod has a log to read.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import datetime
import ipaddress
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devstack.supervisor import stop_processes

NEVER_READY = "never-ready"
# A Job's pod whose image contains this ends Failed with exit code 1 (kwok runs no container,
# so a test that wants failing tests chooses them by the image it gives the Job).
FAILS_TESTS = "fails-tests"
NODE_NAME = "kwok-node-0"
# Fake addresses, allocated in the API and never connected to, from the benchmarking range
# (RFC 2544) rather than a private one: nothing on this machine may target 10/8 or 172.16/12.
SERVICE_CIDR = "198.18.0.0/16"  # ClusterIPs
POD_CIDR = "198.19.0.0/24"  # pod IPs written by kwok
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the test process dies without stopping the control plane."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ---------------------------------------------------------------- certificates


def _write_pki(pki: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("relay-test-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(key_pem(ca_key))

    def issue(stem: str, subject: x509.Name, usage, sans=None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (pki / f"{stem}.key").write_bytes(key_pem(key))

    service_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    issue(
        "apiserver",
        name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(d) for d in dns]
        + [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(service_ip)],
    )
    issue("admin", name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    # the apiserver's own client certificate towards kubelets (kwok)
    kubelet_client = name("kube-apiserver", "system:masters")
    issue("apiserver-kubelet-client", kubelet_client, ExtendedKeyUsageOID.CLIENT_AUTH)

    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(key_pem(sa))
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# ---------------------------------------------------------------- kwok stages


def kwok_stages(stage_dir: Path) -> list[dict]:
    """kwok's default stages (copied from its module by the build) plus the never-ready one."""
    contains = f'.spec.containers.[].image | contains("{NEVER_READY}")'
    fails = f'.spec.containers.[].image | contains("{FAILS_TESTS}")'
    stages = []
    for f in sorted(stage_dir.glob("*.yaml")):
        stage = yaml.safe_load(f.read_text())
        if stage["metadata"]["name"] == "pod-ready":
            stage["spec"]["selector"]["matchExpressions"].append(
                {"key": contains, "operator": "NotIn", "values": ["true"]}
            )
        if stage["metadata"]["name"] == "pod-complete":
            stage["spec"]["selector"]["matchExpressions"].append(
                {"key": fails, "operator": "NotIn", "values": ["true"]}
            )
            failing = copy.deepcopy(stage)
            failing["metadata"]["name"] = "pod-fail"
            failing["spec"]["selector"]["matchExpressions"][-1]["operator"] = "In"
            template = failing["spec"]["next"]["statusTemplate"]
            failing["spec"]["next"]["statusTemplate"] = (
                template.replace("exitCode: 0", "exitCode: 1")
                .replace("reason: Completed", "reason: Error")
                .replace("phase: Succeeded", "phase: Failed")
            )
            stages.append(failing)
        stages.append(stage)
    names = {s["metadata"]["name"] for s in stages}
    if "pod-ready" not in names:
        raise RuntimeError(f"no pod-ready stage in {stage_dir}: rebuild with scripts/k8s-testenv")
    stages.append(
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Stage",
            "metadata": {"name": "pod-never-ready"},
            "spec": {
                "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                "selector": {
                    "matchExpressions": [
                        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                        {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                        {"key": contains, "operator": "In", "values": ["true"]},
                        {
                            "key": ".status.containerStatuses[]?.state.waiting.reason",
                            "operator": "NotIn",
                            "values": ["ImagePullBackOff"],
                        },
                    ]
                },
                "next": {"statusTemplate": _NEVER_READY_STATUS},
            },
        }
    )
    return stages


_NEVER_READY_STATUS = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  message: "containers with unready status"
  reason: ContainersNotReady
  status: "False"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  message: "containers with unready status"
  reason: ContainersNotReady
  status: "False"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  imageID: ""
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    waiting:
      message: {{ printf "Back-off pulling image %q" .image | Quote }}
      reason: ImagePullBackOff
{{ end }}
{{ $hostIPs := NodeIPsWith .spec.nodeName }}
{{ with $hostIPs }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Pending
startTime: {{ $now | Quote }}
"""


# ---------------------------------------------------------------- control plane


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log: Path


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on 127.0.0.1."""

    bin_dir: Path
    work_dir: Path
    node_name: str = NODE_NAME
    startup_timeout: float = 90.0

    api_port: int = 0
    etcd_port: int = 0
    startup_seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _procs: list[_Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bin_dir = Path(self.bin_dir)
        self.work_dir = Path(self.work_dir)
        self.share_dir = self.bin_dir.parent / "share"
        missing = [b for b in BINARIES if not (self.bin_dir / b).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{', '.join(missing)} missing in {self.bin_dir}: run scripts/k8s-testenv build"
            )
        self.pki = self.work_dir / "pki"
        self.logs = self.work_dir / "logs"
        self.kubeconfig = self.work_dir / "kubeconfig"

    # -------------------------------------------------------------- public

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def api_client(self):
        """A new official `kubernetes` client ApiClient, admin, for this control plane."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        atexit.register(self.stop)
        try:
            self._start(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = round(time.monotonic() - t0, 2)
        (self.work_dir / "startup.json").write_text(
            json.dumps({"startup_seconds": self.startup_seconds, "timings": self.timings}) + "\n"
        )
        return self

    def stop(self) -> None:
        """Stop every process started, by PID, through the stack's supervisor: etcd last, so
        the apiserver shuts down cleanly (in about a second), then reap them.

        Unlike the stack's daemons these are children of this process, with no pidfiles: they
        live as long as one test session (and die with it, `_die_with_parent`)."""
        procs, self._procs = self._procs, []
        live = [p for p in procs if p.popen.poll() is None]
        for wave in ([p for p in live if p.name != "etcd"], [p for p in live if p.name == "etcd"]):
            stop_processes([(p.name, p.popen.pid) for p in wave], progress=lambda line: None)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(timeout=10)
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -------------------------------------------------------------- start-up

    def _start(self, t0: float) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        _write_pki(self.pki)
        self.api_port, self.etcd_port = free_port(), free_port()
        self._write_kubeconfig()
        self.timings["pki"] = round(time.monotonic() - t0, 2)

        self._start_etcd()
        self._wait("etcd", self._etcd_healthy)
        self.timings["etcd"] = round(time.monotonic() - t0, 2)

        self._start_apiserver()
        self._wait("kube-apiserver", self._apiserver_ready)
        self.timings["kube-apiserver"] = round(time.monotonic() - t0, 2)

        self._start_controller_manager()
        self._start_scheduler()
        self._start_kwok()
        api = self.api_client()
        try:
            self._create_node(api)
            self._install_gateway_api(api)
            self._wait("cluster", lambda: self._cluster_ready(api))
        finally:
            api.close()
        self.timings["ready"] = round(time.monotonic() - t0, 2)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [str(self.bin_dir / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,  # a Ctrl-C in pytest does not hit them: stop() does
                preexec_fn=_die_with_parent,
            )
        self._procs.append(_Proc(name, popen, log))

    def _wait(self, what: str, ready, interval: float = 0.1) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.popen.poll() is not None:
                    raise RuntimeError(
                        f"{p.name} exited with {p.popen.returncode} while waiting for {what}; "
                        f"{p.log}:\n{self.log_tail(p.name)}"
                    )
            try:
                if ready():
                    return
                last = None
            except Exception as e:  # not up yet
                last = e
            time.sleep(interval)
        logs = "\n".join(f"== {p.name}\n{self.log_tail(p.name, 10)}" for p in self._procs)
        raise TimeoutError(f"{what} not ready after {self.startup_timeout}s ({last!r})\n{logs}")

    def _start_etcd(self) -> None:
        peer = free_port()
        client = f"http://127.0.0.1:{self.etcd_port}"
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name=default",
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",  # test data: durability does not matter
                "--log-level=warn",
            ],
        )

    def _etcd_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.etcd_port}/health"
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read()).get("health") == "true"

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=none",  # 127.0.0.1 is not a valid endpoint
                "--v=1",
            ],
        )

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _apiserver_ready(self) -> bool:
        with urllib.request.urlopen(
            f"{self.server}/readyz", timeout=2, context=self._ssl_context()
        ) as r:
            return r.status == 200

    def _start_controller_manager(self) -> None:
        kc = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                f"--kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.work_dir / 'kcm-certs'}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
                f"--cluster-signing-key-file={self.pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        kc = str(self.kubeconfig)
        self._spawn(
            "kube-scheduler",
            [
                "kube-scheduler",
                f"--kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.work_dir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _start_kwok(self) -> None:
        config = self.work_dir / "kwok.yaml"
        kwok_configuration = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokConfiguration",
            "options": {
                "cidr": POD_CIDR,
                "nodeIP": "127.0.0.1",
                "manageNodesWithAnnotationSelector": "kwok.x-k8s.io/node=fake",
                "nodeLeaseDurationSeconds": 40,
                # kwok defaults these only for its own config file: a --config needs them
                "nodeLeaseParallelism": 4,
                "nodePlayStageParallelism": 4,
                "podPlayStageParallelism": 4,
                "podsOnNodeSyncParallelism": 1,
                "enableDebuggingHandlers": False,
                "enableProfilingHandler": False,
            },
        }
        docs = [kwok_configuration, *kwok_stages(self.share_dir / "kwok-stages")]
        config.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self._spawn(
            "kwok",
            [
                "kwok",
                f"--config={config}",
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
        )

    def _write_kubeconfig(self) -> None:
        pki = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "relay-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki / "admin.crt"),
                        "client-key": str(pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "relay-test", "context": {"cluster": "relay-test", "user": "admin"}}
            ],
            "current-context": "relay-test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    def _create_node(self, api) -> None:
        from kubernetes import client

        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "annotations": {
                    "kwok.x-k8s.io/node": "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/role": "agent",
                    "node-role.kubernetes.io/agent": "",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            },
        }
        client.CoreV1Api(api).create_node(node)

    def _install_gateway_api(self, api) -> None:
        from kubernetes import dynamic

        path = self.share_dir / "gateway-api-standard-install.yaml"
        dyn = dynamic.DynamicClient(api)
        self.gateway_api_crds: list[str] = []
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            resource.create(body=doc)
            if doc["kind"] == "CustomResourceDefinition":
                self.gateway_api_crds.append(doc["metadata"]["name"])

    def _cluster_ready(self, api) -> bool:
        from kubernetes import client

        core = client.CoreV1Api(api)
        core.read_namespace("default")
        core.read_namespaced_service_account("default", "default")
        node = core.read_node(self.node_name)
        if not any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
            return False
        ext = client.ApiextensionsV1Api(api)
        for name in self.gateway_api_crds:
            crd = ext.read_custom_resource_definition(name)
            conditions = crd.status.conditions or [] if crd.status else []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True


def main() -> None:  # python -m devstack.controlplane BIN_DIR WORK_DIR: start, report, stop
    import sys

    cp = ControlPlane(Path(sys.argv[1]), Path(sys.argv[2]))
    with cp:
        print(f"control plane ready in {cp.startup_seconds}s {cp.timings}; {cp.kubeconfig}")
        if "--hold" in sys.argv:
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()


if __name__ == "__main__":
    main()
