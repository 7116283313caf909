"""Static checks of the multi-machine deployment: docker-compose.yml, .env, Dockerfile.

No Docker engine is needed: these tests read the real files and check what `docker compose`
would otherwise only discover at `up` time (missing files, unset variables, dangling names).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_FILE = ROOT / ".env"
DOCKERFILE = ROOT / "Dockerfile"

SEARCH_ATTRIBUTE_SERVICE = "register-search-attributes"
WORKER_SERVICE = "worker"
EXPECTED_SEARCH_ATTRIBUTES = {
    "CollectionStage": "Keyword",
    "DaysPastDue": "Int",
    "OutstandingAmount": "Double",
    "RiskGrade": "Keyword",
    "CollectionPaused": "Bool",
    "PromiseDueDate": "Datetime",
    "AssignedAgent": "Keyword",
    "ArrangementState": "Keyword",
    "Strategy": "Keyword",
}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt}, $VAR
_BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<rest>[^}]*)\}")
_BARE = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml defines no services"
    return found


def env_file_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env line is not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip().strip("'\"")
    return values


def strings_in(node: Any) -> list[str]:
    """Every string (keys too) in the parsed compose file: what compose interpolates."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings_in(key) + strings_in(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return []


def variable_uses(text: str) -> list[tuple[str, bool]]:
    """(name, has_default) for each variable reference; `$$` is a literal dollar."""
    text = text.replace("$$", "")
    uses = []
    for match in _BRACED.finditer(text):
        op = match.group("op") or ""
        # A default, or a required value with its message (`:?msg`: compose stops and says what to set).
        uses.append((match.group("name"), op in ("-", ":-", "+", ":+")
                     or (op in ("?", ":?") and bool(match.group("rest").strip()))))
    for match in _BARE.finditer(_BRACED.sub("", text)):
        uses.append((match.group("name"), False))
    return uses


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on_of(service: dict[str, Any]) -> list[str]:
    deps = service.get("depends_on") or []
    return list(deps) if isinstance(deps, (list, dict)) else []


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths of bind mounts, short (`./a:/b:ro`) or long (`type: bind`) syntax."""
    sources = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source = volume.split(":", 1)[0] if ":" in volume else ""
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            sources.append(str(volume.get("source", "")))
    return sources


def named_volumes_used(service: dict[str, Any]) -> list[str]:
    names = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str) and ":" in volume:
            source = volume.split(":", 1)[0]
            if source and not source.startswith((".", "/", "~", "$")):
                names.append(source)
        elif isinstance(volume, dict) and volume.get("type") == "volume" and volume.get("source"):
            names.append(str(volume["source"]))
    return names


def dockerfile_copy_sources() -> list[str]:
    sources = []
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        words = line.strip().split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from") for word in words[1:]):
            continue  # copies from another build stage or image, not the build context
        if args and args[0].startswith("["):
            args = yaml.safe_load(" ".join(args))  # JSON form
        sources.extend(args[:-1])
    return sources


def test_the_compose_file_parses_as_a_mapping_of_services(services: dict[str, dict[str, Any]]) -> None:
    assert all(isinstance(service, dict) for service in services.values())


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name, service in services.items() if not (service.get("image") or service.get("build"))]
    assert not missing, f"services without image or build: {missing}"


def test_every_build_context_and_dockerfile_exists(services: dict[str, dict[str, Any]]) -> None:
    builds = {name: service["build"] for name, service in services.items() if service.get("build")}
    assert builds, "expected at least the worker to be built from this repository"
    for name, build in builds.items():
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context).is_dir(), f"{name}: build context {context!r} is not a folder"
        assert (ROOT / context / dockerfile).is_file(), f"{name}: {dockerfile!r} missing in {context!r}"


def test_every_bind_mounted_host_path_exists_in_the_repository(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source in bind_sources(service):
            assert source.startswith("."), f"{name}: bind mount {source!r} points outside the repository"
            assert (ROOT / source).exists(), f"{name}: bind-mounted {source!r} does not exist"


def test_every_named_volume_is_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in named_volumes_used(service):
            assert volume in declared, f"{name}: volume {volume!r} is not declared under top-level volumes"


def test_every_variable_has_a_default_or_is_defined_in_the_env_file(compose: dict[str, Any]) -> None:
    defined = {key for key, value in env_file_values().items() if value}
    undefined = sorted({name for text in strings_in(compose) for name, has_default in variable_uses(text)
                        if not has_default and name not in defined})
    assert not undefined, f"variables neither defaulted nor set in .env: {undefined}"


def test_the_variable_scanner_sees_bare_braced_and_defaulted_forms() -> None:
    assert variable_uses("a:${A}") == [("A", False)]
    assert variable_uses("${B:-x}/${C-}") == [("B", True), ("C", True)]
    # `:?message` is a required value that compose asks for by name: accounted for; a bare `:?` is not.
    assert variable_uses("$D and $$E and ${F:?set F} ${G:?}") == [("F", True), ("G", False), ("D", False)]


def test_every_depends_on_target_is_a_defined_service(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target in depends_on_of(service):
            assert target in services, f"{name} depends on undefined service {target!r}"
            assert target != name, f"{name} depends on itself"


def test_the_temporal_server_waits_for_the_schema_one_shot_to_succeed(
        services: dict[str, dict[str, Any]]) -> None:
    deps = services["temporal"]["depends_on"]
    assert deps["temporal-admin-tools"]["condition"] == "service_completed_successfully"
    assert "temporal-sql-tool" in setup_script_text(services["temporal-admin-tools"])


def setup_script_text(service: dict[str, Any]) -> str:
    """The text of the script a one-shot runs, read from its bind mount in the repository."""
    words = command_words(service)
    mounts = [volume.split(":")[:2] for volume in service.get("volumes") or [] if isinstance(volume, str)]
    for word in words:
        for host, container in mounts:
            if word.startswith(container.rstrip("/") + "/"):
                return (ROOT / host / word[len(container.rstrip("/")) + 1:]).read_text(encoding="utf-8")
    pytest.fail(f"no mounted script among {words}")


def test_the_search_attribute_one_shot_registers_exactly_the_eight_attributes_with_their_types(
        services: dict[str, dict[str, Any]]) -> None:
    service = services[SEARCH_ATTRIBUTE_SERVICE]
    specs = [word for word in command_words(service) if re.fullmatch(r"[A-Za-z_]\w*=\w+", word)]
    registered = dict(spec.split("=", 1) for spec in specs)
    assert len(specs) == len(registered), f"an attribute is listed twice: {specs}"
    assert registered == EXPECTED_SEARCH_ATTRIBUTES


def test_the_search_attribute_one_shot_tolerates_already_existing_attributes(
        services: dict[str, dict[str, Any]]) -> None:
    script = setup_script_text(services[SEARCH_ATTRIBUTE_SERVICE])
    assert "temporal operator search-attribute create" in script
    assert "already exists" in script
    assert "cluster health" in script, "the one-shot must wait until the server answers"


def test_the_worker_environment_selects_the_temporal_server_and_namespace(
        services: dict[str, dict[str, Any]]) -> None:
    env = environment_of(services[WORKER_SERVICE])
    assert env.get("TEMPORAL_ADDRESS") == "temporal:7233"
    assert env.get("TEMPORAL_NAMESPACE")
    assert env.get("ARREARS_TASK_QUEUE") == "collections"


def test_the_worker_starts_after_the_search_attributes_are_registered(
        services: dict[str, dict[str, Any]]) -> None:
    deps = services[WORKER_SERVICE]["depends_on"]
    assert deps[SEARCH_ATTRIBUTE_SERVICE]["condition"] == "service_completed_successfully"
    assert "temporal" in deps


def test_no_service_uses_the_deprecated_auto_setup_image(services: dict[str, dict[str, Any]]) -> None:
    offenders = [name for name, service in services.items()
                 if "temporalio/auto-setup" in str(service.get("image", ""))]
    assert not offenders, f"temporalio/auto-setup is deprecated; used by {offenders}"


def test_every_image_tag_is_pinned_through_a_version_variable(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: image {image!r} has no pinned tag"
        assert re.fullmatch(r"\$\{[A-Z_]+_VERSION\}", tag), f"{name}: tag {tag!r} should come from .env"


def test_the_dockerfile_copies_only_paths_that_exist() -> None:
    sources = dockerfile_copy_sources()
    assert sources, "the Dockerfile copies nothing"
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert not missing, f"Dockerfile COPY sources missing from the repository: {missing}"


def test_the_dockerignore_does_not_exclude_what_the_dockerfile_copies() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied = {source.rstrip("/") for source in dockerfile_copy_sources()}
    assert not copied & ignored, f"copied but ignored: {sorted(copied & ignored)}"


def test_the_image_runs_the_worker_as_a_non_root_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the last USER must not be root"
    assert 'CMD ["python", "worker.py"]' in lines


def test_the_workers_use_the_migrated_postgresql_ledger(services: dict[str, dict[str, Any]]) -> None:
    worker, migrate = services["worker"], services["migrate-ledger"]
    url = worker["environment"]["ARREARS_DATABASE_URL"]
    assert url.startswith("postgresql://") and url.endswith("@postgresql:5432/arrears")
    assert migrate["environment"]["ARREARS_DATABASE_URL"] == url
    assert migrate["command"] == ["python", "-m", "ledger", "upgrade"]
    assert worker["depends_on"]["migrate-ledger"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["create-ledger-database"]["condition"] == "service_completed_successfully"
    assert "CREATE DATABASE arrears" in services["create-ledger-database"]["command"][0]


# -- who holds what (README "Who holds what") ----------------------------------------------------
DESK_SERVICE = "desk"
CODEC_SERVICE = "codec-server"
UI_SERVICE = "temporal-ui"
# Hold the payload keys: the workers and the desk (to read and write cases), and the codec server
# (to decrypt for reading, behind a token).
KEY_HOLDERS = {WORKER_SERVICE, DESK_SERVICE, CODEC_SERVICE}
# Reach the Temporal frontend: the desk and the workers act on cases; the read-only UI and the
# one-shot that registers search attributes (no payload keys) read or set up the namespace.
FRONTEND_CLIENTS = {WORKER_SERVICE, DESK_SERVICE, UI_SERVICE, SEARCH_ATTRIBUTE_SERVICE}
LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address or "" for all interfaces, host port, container port) of each published port."""
    found = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            found.append((str(port.get("host_ip", "")), str(port.get("published", "")), str(port.get("target", ""))))
            continue
        text = str(port).split("/", 1)[0]
        if text.startswith("["):  # [::1]:8000:8000
            address, _, rest = text[1:].partition("]:")
            host_port, _, container = rest.rpartition(":")
            found.append((address, host_port, container))
            continue
        parts = text.split(":")
        if len(parts) == 1:  # "7233": a random host port on all interfaces
            found.append(("", "", parts[0]))
        elif len(parts) == 2:
            found.append(("", parts[0], parts[1]))
        else:
            found.append((":".join(parts[:-2]), parts[-2], parts[-1]))
    return found


def test_the_port_parser_reads_short_and_long_forms() -> None:
    assert published_ports({"ports": ["7233", "8080:8080", "127.0.0.1:8081:8081/tcp", "[::1]:8000:8000",
                                      {"target": 7233, "published": 7233, "host_ip": "127.0.0.1"}]}) == [
        ("", "", "7233"), ("", "8080", "8080"), ("127.0.0.1", "8081", "8081"), ("::1", "8000", "8000"),
        ("127.0.0.1", "7233", "7233")]


def test_the_temporal_ui_is_read_only(services: dict[str, dict[str, Any]]) -> None:
    env = environment_of(services[UI_SERVICE])
    assert env.get("TEMPORAL_DISABLE_WRITE_ACTIONS") == "true"
    finer = {name: value for name, value in env.items() if name.endswith("_DISABLED")}
    assert finer and all(value == "true" for value in finer.values()), finer
    assert env.get("TEMPORAL_CODEC_ENDPOINT")


def test_the_codec_server_requires_a_token(services: dict[str, dict[str, Any]]) -> None:
    codec = services[CODEC_SERVICE]
    env = environment_of(codec)
    assert env.get("ARREARS_CODEC_AUTH") == "token"
    words = command_words(codec)
    assert words[:3] == ["python", "-m", "infra.codec_server"]
    assert "--auth" not in words or words[words.index("--auth") + 1] == "token"
    # The shared token is required (compose stops and says what to set), never a default.
    assert [(name, has_default) for name, has_default in variable_uses(env.get("ARREARS_CODEC_TOKEN", ""))] == [
        ("ARREARS_CODEC_TOKEN", True)]
    assert env["ARREARS_CODEC_TOKEN"].startswith("${ARREARS_CODEC_TOKEN:?")
    # Desk tokens are checked in the ledger the desk writes, once it is migrated.
    assert env.get("ARREARS_DATABASE_URL") == environment_of(services[WORKER_SERVICE])["ARREARS_DATABASE_URL"]
    assert codec["depends_on"]["migrate-ledger"]["condition"] == "service_completed_successfully"


def test_only_the_workers_the_desk_and_the_codec_server_hold_the_payload_keys(
        services: dict[str, dict[str, Any]]) -> None:
    holders = {name for name, service in services.items()
               if "ARREARS_PAYLOAD_KEYS" in environment_of(service)
               or any("ARREARS_PAYLOAD_KEYS" in text for text in strings_in(service))}
    assert holders == KEY_HOLDERS
    worker_keys = environment_of(services[WORKER_SERVICE])["ARREARS_PAYLOAD_KEYS"]
    for name in KEY_HOLDERS:
        assert environment_of(services[name])["ARREARS_PAYLOAD_KEYS"] == worker_keys, name
    assert not any(service.get("env_file") for service in services.values()), "an env_file could hand out keys"


def test_only_the_desk_the_workers_and_readers_reach_the_temporal_frontend(
        services: dict[str, dict[str, Any]]) -> None:
    clients = {name for name, service in services.items() if name != "temporal"
               and any("temporal:7233" in text for text in strings_in(service))}
    assert clients == FRONTEND_CLIENTS
    for name in FRONTEND_CLIENTS - KEY_HOLDERS:  # the UI and the one-shot: no keys
        assert "ARREARS_PAYLOAD_KEYS" not in environment_of(services[name]), name


def test_the_desk_service_serves_the_desk_with_the_workers_settings(services: dict[str, dict[str, Any]]) -> None:
    desk, worker = services[DESK_SERVICE], services[WORKER_SERVICE]
    assert desk.get("build")
    assert command_words(desk) == ["python", "-m", "desk", "serve", "--host", "0.0.0.0", "--port", "8000"]
    deps = desk["depends_on"]
    assert deps["temporal"]["condition"] == "service_healthy"
    assert deps["migrate-ledger"]["condition"] == "service_completed_successfully"
    env, worker_env = environment_of(desk), environment_of(worker)
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "ARREARS_TASK_QUEUE", "ARREARS_DATABASE_URL"):
        assert env.get(name) == worker_env[name], name
    assert "ARREARS_DESK_SECURE_COOKIES" in env
    assert {"ARREARS_OIDC_ISSUER", "ARREARS_OIDC_CLIENT_ID", "ARREARS_OIDC_CLIENT_SECRET"} <= set(env)
    assert published_ports(desk) == [("127.0.0.1", "8000", "8000")]


def test_the_temporal_frontend_is_not_published_on_all_interfaces(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for address, host_port, container in published_ports(service):
            if "7233" in (host_port, container):
                assert address in LOOPBACK, f"{name} publishes the Temporal frontend on all interfaces"


def test_services_without_a_login_of_their_own_are_on_loopback(services: dict[str, dict[str, Any]]) -> None:
    # The UI has no login here and the codec server decrypts: the bank's proxy publishes them.
    for name in (UI_SERVICE, CODEC_SERVICE):
        ports = published_ports(services[name])
        assert ports and all(address in LOOPBACK for address, _, _ in ports), (name, ports)


def test_the_image_holds_every_package_the_services_run() -> None:
    """`pip install .` in the Dockerfile builds the packages pyproject names: each must be copied."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    copied = {source.rstrip("/") for source in dockerfile_copy_sources()}
    missing = sorted({package.split(".")[0] for package in packages} - copied)
    assert not missing, f"pyproject.toml installs {missing} but the Dockerfile does not COPY them"
