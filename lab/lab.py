#!/usr/bin/env python3
"""The lab: real Debian hosts (13 trixie by default, or 12 bookworm) as systemd containers on one
Docker network. LAB_DEBIAN picks the release, LAB_DEBIAN_HOSTS a different one for single hosts
(see lab/topology.py); each release has its own base and host image.

    python3 lab/lab.py up [--fresh]   engine, images, network, hosts, SSH key, secrets
    python3 lab/lab.py down           remove the lab's containers and network (images stay)
    python3 lab/lab.py status         one line per host

Written by hand because no maintained tool does this part: Docker Compose v2 is not available
from Debian, and the lab must also start the engine and build its base image with no registry.
Only the standard library and the docker CLI are used, so this runs before the virtualenv exists.
"""

import argparse
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab import topology as topo  # noqa: E402
from webstack.secret_loader import SECRETS  # noqa: E402  (standard library only)

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "lab" / "image"
LABEL = "ha-webstack.lab=1"
SSH_KEY = topo.STATE_DIR / "id_ed25519"
KNOWN_HOSTS = topo.STATE_DIR / "known_hosts"
SECRETS_FILE = ROOT / "secrets" / "lab.env"
DOCKERD_LOG = Path("/var/log/ha-webstack-dockerd.log")
DEBIAN_MIRROR = os.environ.get("LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# systemd as PID 1 without --privileged (which fails here): see ../shared/LAB-NOTES.md.
RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
    "--security-opt", "seccomp=unconfined", "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-e", "container=docker", "--label", LABEL,
    # A reboot (`systemctl reboot`, as ops/upgrade_debian.py does) ends PID 1: docker starts the
    # host again, as a server's firmware would. `docker stop` (a drill) still keeps it down.
    "--restart", "unless-stopped",
    # /proc/sys is read-only in a container: the LBs' non-local bind (for the floating IP) is set
    # here, per network namespace. tasks/keepalived.py still declares it for real servers.
    "--sysctl", "net.ipv4.ip_nonlocal_bind=1",
]
FLAGS_DIGEST = hashlib.sha256(" ".join(RUN_FLAGS).encode()).hexdigest()[:12]
CLIENT_PACKAGES = ["curl", "wrk", "nmap", "openssl", "ca-certificates", "netbase",
                   "netcat-openbsd", "sysbench", "mariadb-client"]


def base_image(release: str) -> str:
    return f"ha-webstack/base:{release}"


def host_image(release: str) -> str:
    return f"ha-webstack/host:{release}"


def log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def run(*cmd: str, check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, **kw)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("docker", *args, check=check)


# --- engine -------------------------------------------------------------------------------

def engine_up() -> bool:
    return run("docker", "info", check=False).returncode == 0


def ensure_engine() -> None:
    if engine_up():
        return
    if not shutil.which("dockerd"):
        log("installing Docker Engine from Debian (docker.io)")
        apt_install("docker.io")
    if Path("/run/systemd/system").exists():
        run("systemctl", "start", "docker")
    else:
        clear_stale_pidfiles()
        log(f"starting dockerd (log: {DOCKERD_LOG})")
        with open(DOCKERD_LOG, "a") as out:
            subprocess.Popen(["dockerd"], stdout=out, stderr=out, start_new_session=True)
    for _ in range(60):
        if engine_up():
            return
        time.sleep(1)
    sys.exit(f"[lab] the Docker engine did not answer within 60 s; see {DOCKERD_LOG}")


def clear_stale_pidfiles() -> None:
    """A killed dockerd/containerd leaves pid files behind that block the next start."""
    for pidfile in (Path("/var/run/docker.pid"), Path("/run/docker/containerd/containerd.pid")):
        if not pidfile.exists():
            continue
        try:
            os.kill(int(pidfile.read_text().strip() or 0), 0)
        except (ValueError, ProcessLookupError):
            log(f"removing stale {pidfile}")
            pidfile.unlink()


def apt_install(*packages: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run("apt-get", "update", "-qq", env=env)
    run("apt-get", "install", "-y", "-qq", *packages, env=env)


# --- images -------------------------------------------------------------------------------

def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False).returncode == 0


def ensure_base_image(release: str) -> None:
    """debian:<release> from a registry when one answers, else a local debootstrap import."""
    base = base_image(release)
    if image_exists(base):
        return
    if run("timeout", "60", "docker", "pull", f"debian:{release}", check=False).returncode == 0:
        docker("tag", f"debian:{release}", base)
        return
    log(f"no registry: building the {release} base image with debootstrap (about a minute)")
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="ha-webstack-rootfs-") as rootfs:
        run("debootstrap", "--variant=minbase",
            "--include=openssh-server,python3,iproute2,procps,systemd-sysv,dbus,sudo",
            release, rootfs, DEBIAN_MIRROR)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run("docker", "import", "-", base, stdin=tar.stdout)
        tar.wait()


def image_digest() -> str:
    h = hashlib.sha256()
    for f in sorted(IMAGE_DIR.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def ensure_host_image(release: str) -> str:
    """The host image's id; rebuilt only when lab/image/ changed (its digest is a label)."""
    digest = image_digest()
    image = host_image(release)
    current = docker("image", "inspect", "-f", '{{index .Config.Labels "ha-webstack.digest"}}',
                     image, check=False).stdout.strip()
    if current != digest:
        log(f"building the lab host image for {release}")
        run("docker", "build", "-q", "--build-arg", f"BASE={base_image(release)}", "--label",
            f"ha-webstack.digest={digest}", "--label", f"ha-webstack.debian={release}",
            "-t", image, str(IMAGE_DIR), env=dict(os.environ, DOCKER_BUILDKIT="0"))
    return docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()


# --- network and hosts --------------------------------------------------------------------

def lab_containers() -> list[str]:
    out = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout
    return out.split()


def remove_containers(names: list[str]) -> None:
    if names:
        log(f"removing {' '.join(names)}")
        docker("rm", "-f", "-v", *names)


def ensure_network(t: topo.Topology) -> None:
    fmt = "{{range .IPAM.Config}}{{.Subnet}}{{end}}"
    res = docker("network", "inspect", "-f", fmt, topo.NETWORK_NAME, check=False)
    if res.returncode == 0 and res.stdout.strip() == t.subnet:
        return
    if res.returncode == 0:
        log(f"network {topo.NETWORK_NAME} has subnet {res.stdout.strip()}, want {t.subnet}")
        remove_containers(lab_containers())
        docker("network", "rm", topo.NETWORK_NAME)
    docker("network", "create", "--subnet", t.subnet, "--gateway", t.gateway,
           topo.NETWORK_NAME)


def container_state(name: str) -> tuple[str, str, str] | None:
    """(status, address, image id, flags digest), or None if there is no such container."""
    net = '{{with index .NetworkSettings.Networks "NET"}}{{.IPAddress}}{{else}}-{{end}}'
    fmt = ("{{.State.Status}} " + net.replace("NET", topo.NETWORK_NAME) + " {{.Image}}"
           ' {{index .Config.Labels "ha-webstack.flags"}}')
    res = docker("inspect", "-f", fmt, name, check=False)
    return tuple(res.stdout.split()) if res.returncode == 0 else None


def ensure_host(h: topo.LabHost, image_id: str) -> None:
    """Created from its release's image; one on another image (say, the release changed) is
    recreated."""
    state = container_state(h.name)
    if state and (state[1] != h.address or state[2] != image_id
                  or state[3:] != (FLAGS_DIGEST,)):
        log(f"{h.name}: wrong address, outdated image or run flags, recreating")
        remove_containers([h.name])
        state = None
    if state is None:
        log(f"{h.name}: creating at {h.address}")
        docker("run", "-d", "--name", h.name, "--hostname", h.name,
               "--network", topo.NETWORK_NAME, "--ip", h.address, *RUN_FLAGS,
               "--label", f"ha-webstack.flags={FLAGS_DIGEST}", host_image(h.debian))
    elif state[0] in ("paused",):
        docker("unpause", h.name)
    elif state[0] != "running":
        log(f"{h.name}: {state[0]}, starting")
        docker("start", h.name)


def wait_for_systemd(name: str) -> str:
    res = run("timeout", "90", "docker", "exec", name, "systemctl", "is-system-running",
              "--wait", check=False)
    status = res.stdout.strip()
    if status not in ("running", "degraded"):
        failed = docker("exec", name, "systemctl", "--failed", "--no-legend", check=False)
        sys.exit(f"[lab] {name}: systemd is '{status}'\n{failed.stdout}")
    return status


def ensure_ssh_key() -> str:
    topo.STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    if not SSH_KEY.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ha-webstack-lab",
            "-f", str(SSH_KEY))
    return SSH_KEY.with_suffix(".pub").read_text()


def provision_access(h: topo.LabHost, pubkey: str) -> str:
    """Install the lab key for `deploy` (as cloud-init would); return a known_hosts line."""
    script = ("install -d -m 700 -o deploy -g deploy /home/deploy/.ssh && "
              "cat > /home/deploy/.ssh/authorized_keys && "
              "chown deploy:deploy /home/deploy/.ssh/authorized_keys && "
              "chmod 600 /home/deploy/.ssh/authorized_keys")
    run("docker", "exec", "-i", h.name, "sh", "-c", script, input=pubkey)
    for _ in range(30):
        res = docker("exec", h.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False)
        if res.returncode == 0:
            keytype, key = res.stdout.split()[:2]
            return f"{h.address} {keytype} {key}\n"
        time.sleep(1)
    sys.exit(f"[lab] {h.name}: no SSH host key after 30 s")


def ensure_client_tools(name: str) -> None:
    if docker("exec", name, "sh", "-c", "command -v wrk && command -v nmap", check=False
              ).returncode == 0:
        return
    log(f"{name}: installing test clients ({', '.join(CLIENT_PACKAGES)})")
    docker("exec", "-e", "DEBIAN_FRONTEND=noninteractive", name, "sh", "-c",
           "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
           + " ".join(CLIENT_PACKAGES))


def ensure_secrets() -> None:
    """Lab secrets are generated once and kept in the ignored secrets/ directory."""
    SECRETS_FILE.parent.mkdir(mode=0o700, exist_ok=True)
    have = SECRETS_FILE.read_text() if SECRETS_FILE.exists() else ""
    missing = [k for k in SECRETS if f"{k.upper()}=" not in have]
    if missing:
        with open(SECRETS_FILE, "a") as f:
            for key in missing:
                f.write(f"{key.upper()}={secrets.token_urlsafe(24)}\n")
        SECRETS_FILE.chmod(0o600)


def wait_for_ssh(h: topo.LabHost) -> None:
    # A deployed host rate-limits SSH (6 new connections in 30 s): try at most every 6 s.
    for _ in range(20):
        res = run("ssh", "-i", str(SSH_KEY), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
                  "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                  "-o", "ConnectTimeout=3", f"deploy@{h.address}", "sudo", "-n", "true",
                  check=False)
        if res.returncode == 0:
            return
        time.sleep(6)
    sys.exit(f"[lab] {h.name}: ssh deploy@{h.address} failed: {res.stderr.strip()}")


def up(fresh: bool) -> None:
    t = topo.from_env()
    ensure_engine()
    if fresh:
        remove_containers(lab_containers())
    image_ids = {}
    for release in t.releases:
        ensure_base_image(release)
        image_ids[release] = ensure_host_image(release)
    ensure_network(t)
    wanted = {h.name for h in t.hosts}
    remove_containers([n for n in lab_containers() if n not in wanted])
    for h in t.hosts:
        ensure_host(h, image_ids[h.debian])
    pubkey = ensure_ssh_key()
    known = []
    for h in t.hosts:
        status = wait_for_systemd(h.name)
        known.append(provision_access(h, pubkey))
        log(f"{h.name:<11} {h.address:<15} {h.debian:<9} systemd {status}")
    KNOWN_HOSTS.write_text("".join(known))
    ensure_client_tools("client")
    ensure_secrets()
    topo.save(t)
    for h in t.managed_hosts:
        wait_for_ssh(h)
    mixed = ", ".join(f"{n} {r}" for n, r in t.debian_hosts)
    log(f"{len(t.hosts)} hosts up on {topo.NETWORK_NAME} ({t.subnet}), Debian {t.debian}"
        + (f" ({mixed})" if mixed else ""))


def down() -> None:
    if not engine_up():
        log("no Docker engine running: nothing to remove")
        return
    remove_containers(lab_containers())
    if docker("network", "inspect", topo.NETWORK_NAME, check=False).returncode == 0:
        docker("network", "rm", topo.NETWORK_NAME)
    log("lab removed (images kept)")


def status() -> None:
    for h in topo.current().hosts:
        state = container_state(h.name) if engine_up() else None
        print(f"{h.name:<11} {h.address:<15} {h.debian:<9} {state[0] if state else 'absent'}")


def endpoints() -> None:
    """What `make lab` ends with: where to point a browser, curl or ssh."""
    t = topo.current()
    ca = "secrets/lab-ca/ca.crt"
    lb = t.host("lb-01").address
    print(f"""
The lab is up ({t.subnet}, network {topo.NETWORK_NAME}).
  The stack (floating IP):   https://{t.floating_ip}/   (curl --cacert {ca} ...)
  One web server directly:   http://{t.host('web-01').address}/
  HAProxy stats:             http://{lb}:8404/stats  (user admin, password
                             HAPROXY_STATS_PASSWORD in secrets/lab.env)
  Prometheus:                http://{t.host('monitor-01').address}:9090/alerts
  Alertmanager:              http://{t.host('monitor-01').address}:9093/
  Database primary/replica:  docker exec -it db-01 mariadb   /   docker exec -it db-02 mariadb
  SSH (as the deploy does):  ssh -i {SSH_KEY.relative_to(ROOT)} deploy@{t.host('web-01').address}
  A host's shell:            docker exec -it web-01 bash
  The internet's view:       docker exec -it client bash
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "endpoints"])
    parser.add_argument("--fresh", action="store_true", help="recreate every host container")
    args = parser.parse_args()
    try:
        {"up": lambda: up(args.fresh), "down": down, "status": status,
         "endpoints": endpoints}[args.command]()
    except subprocess.CalledProcessError as e:
        sys.exit(f"[lab] command failed: {' '.join(e.cmd)}\n{e.stderr or ''}")
    except ValueError as e:
        sys.exit(f"[lab] {e}")


if __name__ == "__main__":
    main()
