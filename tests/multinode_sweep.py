"""Run one sweep on a simulated multi-node Ray cluster (ray.cluster_utils.Cluster) and record where it ran.

Used by tests/test_multinode.py in a subprocess: a Cluster in the pytest process would clash with the session's
in-process Ray. The cluster is a head node (1 CPU) and two worker nodes (1 CPU each) that each declare one unit
of the custom resource `extract_slot`; the config asks for one `extract_slot` per extraction actor, so the two
actors must land on different worker nodes, as GPU actors land on different GPU nodes of a real cluster.

Usage: python tests/multinode_sweep.py CONFIG_JSON OUT_DIR
Writes OUT_DIR/run/ (the sweep's run directory) and OUT_DIR/placement.json (worker node ids and the extraction
ledger: node id, pid, model loads and rows of every actor).
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORKER_NODES = 2
SLOT = "extract_slot"


def main(config_path: str, out_dir: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from ie_ray import extract
    from ie_ray.config import parse_config
    from ie_ray.sweep import init_ray, run_sweep

    out = Path(out_dir)
    config = parse_config(json.loads(Path(config_path).read_text()))
    small = dict(object_store_memory=150 * 1024**2)  # 2 shared cores, little RAM per simulated node
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, **small))
    workers = [cluster.add_node(num_cpus=1, resources={SLOT: 1}, **small) for _ in range(WORKER_NODES)]
    cluster.wait_for_nodes()
    try:
        init_ray(address=cluster.address)
        nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
        run_sweep(config, out / "run")
        placement = dict(
            worker_node_ids=[w.node_id for w in workers],
            head_node_id=cluster.head_node.node_id,
            nodes=nodes,
            extractions=[r.to_dict() for r in extract.EXTRACTION_LOG],
        )
        (out / "placement.json").write_text(json.dumps(placement, indent=2, default=str))
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
