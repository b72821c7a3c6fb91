"""Container jobs (``container: image``): every step runs inside the image, as on GitHub.

GitHub starts the job's container with the workspace, the runner's temp and home and its
own node (``/__e``) mounted, and runs ``run:`` steps and JavaScript actions in it with
``docker exec``; PATH is the image's. Here buildah does it without a daemon: one working
container per job (``buildah from``), each step a ``buildah run --isolation chroot`` with
the runner's folders, node and the actions' code bind-mounted at their own paths (so every
path in the step's environment means the same inside), the host's network, and the step's
environment given with ``-e`` over the image's own.

``ContainerEngine.images`` maps the image a workflow names (``ghcr.io/...:1``) to a local
image the test built; nothing is pulled.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .job_state import run_captured


class ContainerError(RuntimeError):
    pass


@dataclass
class ContainerEngine:
    """buildah (its argv with storage options) and the images it may run."""

    buildah: Sequence[str]
    images: dict[str, str] = field(default_factory=dict)

    def _call(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [*self.buildah, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise ContainerError(f"buildah {' '.join(args[:2])}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def open(self, image: str, mounts: Sequence[Path]) -> ContainerExecutor:
        local = self.images.get(image)
        if local is None:
            raise ContainerError(
                f"container image {image!r} is not available to the test runner "
                f"(known: {sorted(self.images)})"
            )
        config = json.loads(self._call("inspect", "--type", "image", local))
        env = config["OCIv1"]["config"].get("Env") or []
        path = next((e.split("=", 1)[1] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
        name = self._call("from", "-q", local).strip()
        return ContainerExecutor(
            self, name, image, path, list(dict.fromkeys(m for m in mounts if m.exists()))
        )


@dataclass
class ContainerExecutor:
    """Runs a step's process in the job's container (see the module's docstring)."""

    engine: ContainerEngine
    container: str
    image: str
    path: str  # the image's PATH: a container job's steps see it, not the runner's
    mounts: list[Path]

    def run(
        self, argv: list[str], env: Mapping[str, str], cwd: Path, timeout: float
    ) -> tuple[int, str]:
        volumes = [arg for m in self.mounts for arg in ("-v", f"{m}:{m}")]
        variables = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        command = [
            *self.engine.buildah, "run", "--isolation", "chroot", "--network", "host",
            "--workingdir", str(cwd), *volumes, *variables, self.container, "--", *argv,
        ]  # fmt: skip
        return run_captured(command, timeout)

    def close(self) -> None:
        subprocess.run(
            [*self.engine.buildah, "rm", self.container], capture_output=True, check=False
        )
