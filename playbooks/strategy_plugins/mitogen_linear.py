"""Mitogen's linear strategy, found through the installed package rather than a path into a venv.

Mitogen for Ansible (requirements-dev.txt) keeps one Python interpreter per host and connection
for the whole run and sends modules to it, instead of starting an interpreter, unpacking the module
and cleaning up for every task. The tasks, their order and their results are Ansible's linear
strategy's; only the transport changes. Measured on the single-host scenario (same machine, same
converged host, over SSH as deploy with sudo): the no-change rerun of site.yml took 1:02 against
2:44 with the stock strategy. Its own documentation points strategy_plugins at a directory inside
the installed package, whose path carries the Python version; this file is that plugin, imported.
ansible.cfg (and molecule's generated one) name it; ANSIBLE_STRATEGY=linear runs without it.

A play that runs on the controller alone (connection: local, as molecule's podman driver creates
and removes containers) runs with the stock strategy: it has no remote interpreter to keep, and
Mitogen's async runner deadlocks there importing a collection's module (containers.podman's
podman_container, started with async: its job never finishes).
"""

from __future__ import annotations

from typing import Any

import ansible_mitogen.loaders
import ansible_mitogen.strategy

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[misc,valid-type]
    """Ansible's linear strategy over Mitogen's connections, except for controller-only plays."""

    def run(self, iterator: Any, play_context: Any, result: int = 0) -> int:
        if getattr(iterator, "_play", None) is not None and iterator._play.connection == "local":
            return _Linear.run(self, iterator, play_context)
        return super().run(iterator, play_context, result)
