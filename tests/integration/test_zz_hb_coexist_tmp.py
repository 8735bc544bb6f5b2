import os
import ray

def test_in_process_ray_is_up():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert ray.is_initialized()
    print("\nRAY_ env after ray.init:", {k: v for k, v in os.environ.items() if k.startswith("RAY_")})
