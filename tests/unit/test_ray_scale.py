"""How `belka serve --engine ray` configures its Ray Serve deployments (no Ray instance needed):
the batch and queue settings become Ray's limits, --replicas a fixed count, --autoscale a range."""
from __future__ import annotations

from app.ray_engine import Scale, ingress_deployment, model_deployment
from app.settings import Settings


def config(application):
    deployment = application._bound_deployment  # Ray 2.52's Application (pinned in constraints.txt)
    return deployment._deployment_config, deployment.ray_actor_options


def test_a_model_runs_one_batch_per_replica_and_queues_queue_max():
    deployment, actor = config(model_deployment(Settings(batch_max=8, queue_max=20), Scale(replicas=3), "m"))
    assert deployment.max_ongoing_requests == 8 and deployment.max_queued_requests == 20
    assert deployment.num_replicas == 3 and deployment.autoscaling_config is None
    assert actor == {"num_cpus": 1.0}


def test_autoscale_is_a_range_around_half_a_batch():
    deployment, _ = config(model_deployment(Settings(batch_max=32), Scale(autoscale=(1, 4), replica_cpus=0.5), "m"))
    scaling = deployment.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.initial_replicas) == (1, 4, 1)
    assert scaling.target_ongoing_requests == 16


def test_the_ingress_reserves_no_cpu_and_scales_like_the_models():
    deployment, actor = config(ingress_deployment(Settings(), Scale(replicas=2)))
    assert actor == {"num_cpus": 0} and deployment.num_replicas == 2
    assert deployment.max_ongoing_requests >= 256  # it waits on the models; it must not cap batching
