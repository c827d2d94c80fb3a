"""containers.podman's podman connection, with pipelining.

The collection's plugin sends every module as a file (`podman cp` or a write into the mounted
container) and runs it with separate `podman exec` calls for the temporary directory, the module
and the clean-up: about three podman processes per task, each costing a Go binary's start-up and
a conmon. Pipelining sends the module on the stdin of one `podman exec -i` instead. Molecule's
inventory names the transport `podman`; with this directory on ANSIBLE_CONNECTION_PLUGINS the
short name resolves here first. Only the test scenarios use it; servers are reached over SSH.
"""

from __future__ import annotations

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import (
    Connection as PodmanConnection,
)

DOCUMENTATION = """
    name: podman
    short_description: Run tasks in podman containers, modules pipelined over stdin
    description:
      - The containers.podman.podman connection with pipelining (podman exec -i).
    options:
      remote_addr:
        description: The ID or name of the container.
        default: inventory_hostname
        vars:
          - name: inventory_hostname
          - name: ansible_host
          - name: ansible_podman_host
      remote_user:
        description: User inside the container to run as.
        vars:
          - name: ansible_user
        cli:
          - name: user
        keyword:
          - name: remote_user
      podman_extra_args:
        description: Extra arguments to pass to the podman command line.
        default: ''
        ini:
          - section: defaults
            key: podman_extra_args
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: Executable for podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
"""


class Connection(PodmanConnection):
    """podman exec, with the module on stdin when Ansible pipelines it."""

    transport = "podman"
    has_pipelining = True

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        # The parent's exec never attaches stdin; -i does, so a pipelined module arrives.
        argv = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(argv, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
