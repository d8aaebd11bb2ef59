"""Per-task model deployments: the task registry, backends and the model server."""
