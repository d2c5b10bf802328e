"""ie-ray: Information Emergence in causal language models. `from ie_ray import measure` for notebooks
(ie_ray/api.py); the sweep job is `ie_ray.sweep.run_sweep`.

`measure` is imported lazily (PEP 562), so importing any ie_ray module (Ray workers do, many times) does not
pay for the API's imports."""

__all__ = ["Measurement", "measure"]


def __getattr__(name: str):
    if name in __all__:
        from ie_ray import api

        return getattr(api, name)
    raise AttributeError(f"module 'ie_ray' has no attribute {name!r}")
