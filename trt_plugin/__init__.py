"""trt_plugin: embcache lookups inside TensorRT engines.

* ``trt_plugin.surgery``: replace a model's embedding Gathers with ``EmbCacheLookup`` nodes
  (onnx-graphsurgeon), exporting the tables into embcache stores;
* ``trt_plugin.config``: the config file (native, or HPS's ps.json);
* ``trt_plugin.ort``: run a surgered graph with ONNX Runtime (or ONNX's reference evaluator) and
  embcache behind the lookups;
* ``trt_plugin.plugin`` and ``trt_plugin.engine``: the TensorRT 10 plugin, engine build and run;
* ``trt_plugin.dlrm``: a DLRM-style example model and its Criteo inputs;
* ``embcache-trt`` (``trt_plugin.cli``): surgery, build, run, import, demo.

``import trt_plugin`` needs nothing beyond embcache; each module imports what it needs.
"""
__all__: list[str] = []
