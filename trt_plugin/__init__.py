"""trt_plugin: embcache lookups inside TensorRT engines (graph surgery, plugin, engine build).

Nothing here yet: see the trt_plugin issue.  ``import trt_plugin`` needs nothing beyond embcache.
"""
__all__: list[str] = []
