"""Node pools, GPU placement and the instance and node lifecycles (upstream at 4e179804).

A bundle's ``node_pools`` describe the GPUs a cluster may use. Nodes are created Ready at
construction (``initial_nodes`` per pool; upstream provisions no more at this commit), with IDs
``<pool>-<k>`` and GPUs ``<node>-gpu-<g>``. With the blis extension
``autoscaler.provision_nodes`` a scale-up that finds no room provisions a node (up to
``max_nodes``), which is Provisioning until its ``provisioning_delay`` has passed. An instance is placed first-fit: pools in
declaration order (a GPU type "" matches any pool), Ready nodes in index order, the node's first
``tp`` free GPUs. An instance that does not fit is not built.

Instance states follow Scheduling -> Loading -> {WarmingUp, Active} -> Draining -> Terminated,
with Terminated reachable from every state and any state reachable from the untracked "";
only Active, WarmingUp and "" instances are routable.
"""

from __future__ import annotations

import attrs

__all__ = ["ACTIVE", "DRAINING", "LOADING", "NODE_PROVISIONING", "NODE_READY", "NodePoolSpec", "Placement", "ROUTABLE",
           "SCHEDULING", "TERMINATED", "WARMING_UP", "LifecycleError", "transition"]

SCHEDULING = "Scheduling"
LOADING = "Loading"
WARMING_UP = "WarmingUp"
ACTIVE = "Active"
DRAINING = "Draining"
TERMINATED = "Terminated"

ROUTABLE = frozenset({ACTIVE, WARMING_UP, ""})
# The states that hold GPUs (upstream's inventory subtracts them).
HOLDS_GPUS = frozenset({LOADING, WARMING_UP, ACTIVE, DRAINING})

_NEXT = {
    SCHEDULING: {LOADING},
    LOADING: {WARMING_UP, ACTIVE},
    WARMING_UP: {ACTIVE, DRAINING},
    ACTIVE: {DRAINING},
    DRAINING: set(),
    TERMINATED: set(),
}

NODE_PROVISIONING = "Provisioning"
NODE_READY = "Ready"
NODE_DRAINING = "Draining"
NODE_TERMINATED = "Terminated"


class LifecycleError(RuntimeError):
    """An instance was moved along a transition its lifecycle does not have (a blis bug)."""


def transition(inst, state: str) -> None:
    """Move ``inst`` to ``state``, refusing transitions upstream's lifecycle forbids."""
    current = inst.state
    if current != "" and state != TERMINATED and state not in _NEXT[current]:
        raise LifecycleError(f"{inst.id}: invalid transition {current} -> {state}")
    inst.state = state


@attrs.frozen
class NodePoolSpec:
    """One pool of identical nodes (the bundle's ``node_pools`` entry)."""

    name: str
    gpu_type: str
    gpus_per_node: int
    initial_nodes: int
    min_nodes: int = 0
    max_nodes: int = 0
    cost_per_hour: float = 0.0
    provisioning_delay: tuple = (0.0, 0.0)    # (mean, stddev) seconds; used only by blis


class Node:
    """One node of a pool: its GPUs and which instance holds each (None: free)."""

    __slots__ = ("id", "pool", "state", "holders")

    def __init__(self, node_id: str, pool: NodePoolSpec, state: str = NODE_READY) -> None:
        self.id = node_id
        self.pool = pool
        self.state = state
        self.holders: list = [None] * pool.gpus_per_node


class Placement:
    """The cluster's nodes and which instance holds which GPUs (upstream PlacementManager)."""

    def __init__(self, pools) -> None:
        self.pools = tuple(pools)
        self.nodes = [[Node(f"{pool.name}-{k}", pool) for k in range(pool.initial_nodes)]
                      for pool in self.pools]
        self.held: dict = {}           # instance id -> [(node, gpu index)]

    def place(self, instance_id: str, gpu_type: str, tp: int, state: str = NODE_READY):
        """First-fit ``tp`` GPUs of one node in ``state`` (Ready; Provisioning to reserve room on
        a node still coming up) for ``instance_id``; the pool, or None."""
        for pool, nodes in zip(self.pools, self.nodes):
            if gpu_type and pool.gpu_type != gpu_type:
                continue
            for node in nodes:
                if node.state != state:
                    continue
                free = [g for g, holder in enumerate(node.holders) if holder is None]
                if len(free) < tp:
                    continue
                taken = free[:tp]
                for g in taken:
                    node.holders[g] = instance_id
                self.held[instance_id] = [(node, g) for g in taken]
                return pool
        return None

    def provision(self, gpu_type: str, tp: int):
        """A new Provisioning node in the first pool of ``gpu_type`` below ``max_nodes`` whose
        nodes have ``tp`` GPUs, or None (blis extension)."""
        for pool, nodes in zip(self.pools, self.nodes):
            if ((gpu_type and pool.gpu_type != gpu_type) or len(nodes) >= pool.max_nodes
                    or pool.gpus_per_node < tp):
                continue
            node = Node(f"{pool.name}-{len(nodes)}", pool, NODE_PROVISIONING)
            nodes.append(node)
            return node
        return None

    def node_of(self, instance_id: str):
        held = self.held.get(instance_id)
        return held[0][0] if held else None

    def release(self, instance_id: str) -> None:
        for node, g in self.held.pop(instance_id, ()):
            node.holders[g] = None

    def cost_of(self, gpu_type: str) -> float:
        """Upstream prices an instance at the first pool of its GPU type."""
        for pool in self.pools:
            if pool.gpu_type == gpu_type:
                return pool.cost_per_hour
        return 0.0

    def gpus_of(self, instance_id: str) -> list[str]:
        return [f"{node.id}-gpu-{g}" for node, g in self.held.get(instance_id, ())]

    def total_gpus(self, gpu_type: str = "") -> int:
        return sum(len(node.holders) for nodes in self.nodes for node in nodes
                   if not gpu_type or node.pool.gpu_type == gpu_type)

    def used_gpus(self, gpu_type: str = "") -> int:
        return sum(1 for nodes in self.nodes for node in nodes
                   if not gpu_type or node.pool.gpu_type == gpu_type
                   for holder in node.holders if holder is not None)

    def provisionable_gpus(self, gpu_type: str) -> int:
        """GPUs the nodes a pool of ``gpu_type`` may still provision would bring."""
        return sum((pool.max_nodes - len(nodes)) * pool.gpus_per_node
                   for pool, nodes in zip(self.pools, self.nodes)
                   if pool.gpu_type == gpu_type and pool.max_nodes > len(nodes))

    def free_gpus(self, gpu_type: str) -> int:
        return self.total_gpus(gpu_type) - self.used_gpus(gpu_type)
