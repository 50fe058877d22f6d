"""What the image tests need from the machine they run on: an OCI builder that works here, and a base image.

Kept in the test harness, never in the product: `make image` uses the machine's docker or podman as they are.

- podman on these machines needs its storage and configuration under a scratch folder, the runc runtime (crun
  refuses their mixed cgroup v1/v2), cgroupfs, a file event log and ulimits no higher than the hard limit.
- Docker Hub cannot be reached, so BentoML's base image (python:3.11-slim) is a **stand-in** built here when it
  cannot be pulled: Debian 12's minimal root filesystem with its python3 (3.11), made by debootstrap from the
  machine's own Debian mirror, with the machine's CA certificates (TLS to PyPI is intercepted here) and
  `python`/`pip` links where the real image has them. The image under test is built FROM it as from the real one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

BASE_IMAGE = "docker.io/library/python:3.11-slim"  # BentoML's base for distro debian, python 3.11
SCRATCH = Path(os.environ.get("MNIST_IMAGE_SCRATCH", "/var/tmp/mnist-serve-image-test"))


def builder() -> str | None:
    """docker when its daemon answers, else podman, else None."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        return "podman"
    return None


def why_not() -> str | None:
    """The reason the image tests cannot run here, or None."""
    which = builder()
    if which is None:
        return "no docker daemon or podman: install podman (Debian: podman runc) to build and test the image"
    if which == "podman" and os.geteuid() != 0:
        return "podman here needs root (rootless podman needs subuid ranges this machine does not set up)"
    return None


def podman_env() -> dict[str, str]:
    """The environment for podman (and `bentoml containerize --backend podman`) with its state under SCRATCH."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    storage, containers = SCRATCH / "storage.conf", SCRATCH / "containers.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{SCRATCH}/storage"\nrunroot = "{SCRATCH}/run"\n')
    nofile = min(hard_nofile(), 32768)
    containers.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'tmp_dir = "{SCRATCH}/tmp"\n'
    )
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(containers)}


def hard_nofile() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def run(args: list[str], env: dict[str, str], timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=check)


def ensure_base_image(tool: str, env: dict[str, str]) -> str:
    """The base image present locally: already there, pulled, or (where it cannot be pulled) the stand-in."""
    if run([tool, "image", "inspect", BASE_IMAGE], env, check=False).returncode == 0:
        return "present"
    if run([tool, "pull", "-q", BASE_IMAGE], env, timeout=120, check=False).returncode == 0:
        return "pulled"
    build_standin(tool, env)
    return "stand-in"


def debian_mirror() -> str:
    """The machine's own Debian mirror, read from its apt sources (never written into the repository)."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not source.is_file():
            continue
        text = source.read_text()
        found = re.search(r"^URIs:\s*(\S+)", text, re.MULTILINE) or re.search(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\b", text, re.MULTILINE
        )
        if found:
            return found.group(1)
    raise RuntimeError("no Debian mirror found in /etc/apt/sources.list{,.d}")


def build_standin(tool: str, env: dict[str, str]) -> None:
    """A stand-in for python:3.11-slim: Debian 12 minbase + python3 (3.11), tagged as the real one."""
    if not shutil.which("debootstrap"):
        raise RuntimeError(f"{BASE_IMAGE} cannot be pulled and debootstrap is missing to build a stand-in")
    with tempfile.TemporaryDirectory(dir=SCRATCH) as work:
        root = Path(work) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,python3-pip,ca-certificates",
                "bookworm",
                str(root),
                debian_mirror(),
            ],
            env,
            timeout=900,
        )
        for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(certificate, root / "usr/local/share/ca-certificates" / certificate.name)
        subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True)
        for marker in (root / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
            marker.unlink()  # as in the real image, whose Python is not Debian's
        for name, target in (("python", "/usr/bin/python3"), ("python3", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
            link = root / "usr/local/bin" / name
            link.unlink(missing_ok=True)
            link.symlink_to(target)
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        (root / "var/lib/apt/lists/partial").mkdir(parents=True)
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [
                tool,
                "import",
                "--change",
                f"ENV SSL_CERT_FILE={bundle}",
                "--change",
                f"ENV PIP_CERT={bundle}",
                "--change",
                'CMD ["python3"]',
                "--message",
                "stand-in for python:3.11-slim (Debian 12 minbase + python3), for tests on machines without Docker Hub",
                "-",
                BASE_IMAGE,
            ],
            stdin=tar.stdout,
            env=env,
            check=True,
            capture_output=True,
        )
        tar.wait()
